"""The clip record: everything the renderer needs, fully resolved, as plain JSON-able data.

The renderer is a pure function of a ClipSpec (plus where it runs: threads, device), so a spec
stored with a clip is enough to render that clip again.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

SPEC_VERSION = 9   # 2: clothing, 3: skirts (clothing.bottom.hang), 4: brows and lashes, exposure highlights, hem
                  # smoothing, 5: outputs (the declaration of every array the clip holds), coverage by AOV,
                  # 6: worn things (glasses), see-through coverage, 7: headphones,
                  # earrings, a simulated scarf and sheer fabric, things held, effects in the air, 8: steam, smoke,
                  # 9: several people


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    clip_id: str
    index: int
    seed: int          # the clip seed; component seeds below are derived from it
    fps: float
    n_frames: int
    body: dict[str, Any]      # model record (kind, path, sha256), betas, skin material
    motion: dict[str, Any]    # procedural name + params, or an AMASS file + start frame
    hair: dict[str, Any]      # geometry params, strand seed, BSDF params
    camera: dict[str, Any]    # lens and placement relative to the posed body
    lighting: dict[str, Any]
    clothing: dict[str, Any]  # top and bottom garments (kind, regions, thickness, fabric) or None each
    worn: dict[str, Any]      # things worn (assets.worn): each kind's record or None
    held: dict[str, Any] | None   # the thing held in one hand (assets.held), or None; its motion is `motion`
    effects: dict[str, Any] | None   # snow, rain, dust or bubbles in the air (assets.effects), or None
    cycles: dict[str, Any]    # resolution, samples, render seed, filter width, curve shape, device
    outputs: dict[str, Any]   # name -> declaration (clipstore.outputs) of every array the clip holds
    # The people in the clip (assets.people): their count, layout and, beside the target (whose
    # components are the fields above), the others: each one's body, motion, hair, clothing, worn,
    # held and `place`, the order of their `instances` channels (person1, person2, ...).
    people: dict[str, Any] = dataclasses.field(default_factory=lambda: {"count": 1, "layout": None, "others": []})
    spec_version: int = SPEC_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClipSpec":
        if d.get("spec_version") != SPEC_VERSION:
            raise ValueError(f"clip spec version {d.get('spec_version')!r} is not {SPEC_VERSION}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "ClipSpec":
        return cls.from_dict(json.loads(text))
