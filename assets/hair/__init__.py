"""Strand hair: grooming (where strands grow and how they lie), colour, and secondary motion."""
from assets.hair import face
from assets.hair.colour import strand_melanin
from assets.hair.dynamics import Body, Motion, move
from assets.hair.field import BodyField, HeadField, vertex_normals
from assets.hair.groom import GROW_KEYS, TIES, Groom, grow
from assets.hair.measure import groom_stats
from assets.hair.sample import MATERIAL_KEYS, check, sample, sample_params

__all__ = ["face", "strand_melanin", "Body", "Motion", "move", "BodyField", "HeadField", "vertex_normals", "GROW_KEYS", "TIES",
           "Groom", "grow", "groom_stats", "MATERIAL_KEYS", "check", "sample", "sample_params"]
