"""The base floor: what every part of gvm-synth shares and nothing else.

Errors a user can cause (`errors`), where the Hydra config lives and how to read it (`conf`), the
entry-point wrapper with one-line errors (`cli`), config checks (`checks`), the range syntax
(`ranges`), hierarchical seeds (`seeds`), provenance, colour transfer and alpha encoding
(`colour`) and the completion record of folder outputs (`done`). It imports no other package of
the project; only `cli` imports Hydra.
"""
