"""The outputs table: every per-pixel array a clip can hold, declared once.

Rendering (which passes to render and how to convert them), the dry run's size estimate, the
store schema and validate, the report, publish (WebDataset and zipped zarr), the dataset card and
the training loader all read this table. Each array written to a store carries its declaration in
its own zarr attributes (`Output.attrs`), so a reader with plain zarr learns what it holds, and a
clip written with an output this code does not know still validates against its own record.

Adding an output is one entry here (with its `outputs.<name>` switch in conf/outputs/) and, if no
existing converter makes it, one converter in render/layers.py.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

# What a coverage group is called in `parts` and in the scene objects' materials. New kinds of
# worn or held objects append here: a label's number never changes once a store holds it. "lens":
# see-through surfaces (their coverage is their opacity); "worn": the opaque things worn; "sheer":
# see-through fabric (its coverage is its opacity); "scarf": opaque simulated cloth; "held": what
# a hand holds; "effect": particles in the air in front of the person (snow, rain, dust, bubbles);
# "volume": steam and smoke (no shader writes it: what alpha holds beyond the surfaces).
PARTS = ("background", "skin", "scalp_hair", "face_hair", "eyes", "mouth", "top", "bottom", "lens", "worn",
         "sheer", "scarf", "held", "effect", "volume")
# The material classes metrics are split by (make bench-layers): the coverage groups each holds;
# every other group is the rest.
CLASSES = {"hair": ("scalp_hair", "face_hair"), "lens": ("lens",), "sheer": ("sheer",), "opaque_objects": ("worn", "held"),
           "effects": ("effect",), "volume": ("volume",)}
PASSES = ("colour", "coverage", "plate")   # render passes an output can be made from
EXPORTS = ("png", "npy")                    # how a WebDataset sample carries an array
CODECS = ("colour", "mask")                 # clipstore.Compression: noise-like colour, or smooth masks and values


@dataclass(frozen=True)
class Output:
    name: str
    about: str                    # one line: what it holds (the card, the docs, the array's attrs)
    made_by: str                  # the render pass whose layers it is converted from (PASSES)
    convert: str                  # the converter in render/layers.py that makes it from those layers
    dtype: str                    # numpy dtype in the store
    channels: tuple[str, ...] = ()  # names along the last axis; () for one value per pixel: (T, H, W)
    units: str = ""
    codec: str = "mask"           # CODECS
    export: str = "png"           # EXPORTS
    required: bool = False        # every clip has it, whatever made it
    parts: tuple[str, ...] = ()   # coverage converters: the coverage groups it sums (PARTS); () for all

    @property
    def ndim(self) -> int:
        return 4 if self.channels else 3

    @property
    def dims(self) -> tuple[str, ...]:
        return ("t", "y", "x", "c") if self.channels else ("t", "y", "x")

    @property
    def attrs(self) -> dict[str, Any]:
        """The declaration as plain data: recorded with the array, and in the clip spec."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_attrs(cls, d: Mapping[str, Any]) -> "Output":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields})

    def to_float(self, a: np.ndarray) -> np.ndarray:
        """Stored values as float32 in their own units: integer arrays over their full range (colour,
        coverage and multipliers in [0, 1]; a label as its number), float ones as they are."""
        a = np.asarray(a)
        if a.dtype.kind == "u" and self.convert != "label":
            return a.astype(np.float32) / np.iinfo(a.dtype).max
        return a.astype(np.float32)

    def check(self) -> None:
        """A declaration this code can write and read, or ValueError naming what is wrong."""
        where = f"output {self.name!r}"
        if self.made_by not in PASSES:
            raise ValueError(f"{where}: made_by {self.made_by!r} is not one of {', '.join(PASSES)}")
        if self.codec not in CODECS or self.export not in EXPORTS:
            raise ValueError(f"{where}: codec {self.codec!r} / export {self.export!r} not in {CODECS} / {EXPORTS}")
        if np.dtype(self.dtype).kind not in "uf":
            raise ValueError(f"{where}: dtype {self.dtype} is not an unsigned integer or a float")
        unknown = sorted(set(self.parts) - set(PARTS))
        if unknown:
            raise ValueError(f"{where}: parts {unknown} are not coverage groups ({', '.join(PARTS)})")


OUTPUTS: dict[str, Output] = {o.name: o for o in (
    Output("fgr", "straight (un-premultiplied) sRGB foreground colour; where alpha is 0, extended from nearby "
           "foreground", "colour", "foreground", "uint8", ("r", "g", "b"), codec="colour", required=True),
    Output("alpha", "linear coverage: the share of the background's light the foreground keeps from reaching the "
           "camera through the pixel, 0..65535", "coverage", "coverage", "uint16", required=True),
    Output("alpha_hair", "the scalp hair's own visible share of alpha, 0..65535 (brows and lashes count as face)",
           "coverage", "coverage", "uint16", parts=("scalp_hair",)),
    Output("bgr", "the background plate: the same camera and light with the person removed, straight sRGB",
           "plate", "plate", "uint8", ("r", "g", "b"), codec="colour"),
    Output("depth", "distance from the camera to the visible foreground surface, coverage-weighted over the pixel "
           "(same blur as alpha); 0 where alpha is 0", "coverage", "distance", "float16", units="metres", export="npy"),
    Output("flow", "forward optical flow of the foreground to the next frame (x right, y down), from the posed "
           "geometry, coverage-weighted over the pixel; 0 where alpha is 0; the last frame has none (its array "
           "attrs list it in invalid_frames)", "coverage", "flow", "float16", ("dx", "dy"), units="pixels",
           export="npy"),
    Output("parts", "which part covers most of the pixel: a label (legend in the array's attrs: 1 + the index in "
           "`parts`), 0 where alpha is 0", "coverage", "label", "uint8", parts=PARTS[1:]),
    Output("instances", "each person's own visible share of alpha (occluded by whoever is in front, blurred as "
           "alpha is), 0..65535, one channel per person: person0 the target, then the clip spec's people.others "
           "in order; written where a clip holds several people. They sum to alpha but for what no person owns "
           "(things in the air in front of everyone)", "coverage", "instances", "uint16", ("person0",), export="npy"),
    Output("shadow", "the shadow and darkening the person casts on the set, a linear multiplier x255 (255: none): "
           "fgr * alpha + bgr * shadow * (1 - alpha) is the frame with the person in the set", "colour",
           "multiplier", "uint8", ("r", "g", "b")),
)}


CLASS_LABELS = (*CLASSES, "rest")   # a class label image: 1 + the index here, 0 where alpha is 0


def class_labels(parts: np.ndarray, legend: Sequence[str]) -> np.ndarray:
    """The material class of each pixel (CLASS_LABELS) as uint8, from a `parts` label array."""
    out = np.zeros(parts.shape, np.uint8)
    for name, mask in class_masks(parts, legend).items():
        out[mask] = 1 + CLASS_LABELS.index(name)
    return out


def class_masks(parts: np.ndarray, legend: Sequence[str]) -> dict[str, np.ndarray]:
    """Where each material class (CLASSES) gives the pixel most of its alpha, from a `parts` label
    array and its legend (the output's `parts`: label 1 + index), and `rest`: the other labels."""
    label = {group: 1 + i for i, group in enumerate(legend)}
    out = {name: np.isin(parts, [label[g] for g in groups if g in label]) for name, groups in CLASSES.items()}
    out["rest"] = (parts > 0) & ~np.any(list(out.values()), axis=0)
    return out


def declared(name: str, recorded: Mapping[str, Any] | None = None) -> Output | None:
    """An array's declaration: what it recorded when written (its zarr attrs), else the table's."""
    if recorded and {"made_by", "dtype", "convert"} <= set(recorded):
        return Output.from_attrs({"name": name, "about": "", **recorded})
    return OUTPUTS.get(name)


def enabled(switches: Mapping[str, Any]) -> dict[str, Output]:
    """The outputs a render writes: the required ones and those switched on (conf/outputs/), in
    the table's order; a switch for an output the table does not declare is an error."""
    unknown = sorted(set(switches) - set(OUTPUTS))
    if unknown:
        raise ValueError(f"outputs: {', '.join(unknown)} not declared (known: {', '.join(OUTPUTS)})")
    bad = sorted(k for k, v in switches.items() if not isinstance(v, bool))
    if bad:
        raise ValueError(f"outputs.{bad[0]} must be true or false, got {switches[bad[0]]!r}")
    for o in OUTPUTS.values():
        o.check()
        if o.required and switches.get(o.name) is False:
            raise ValueError(f"outputs.{o.name}: every clip has it; it cannot be switched off")
    return {n: o for n, o in OUTPUTS.items() if o.required or switches.get(n)}
