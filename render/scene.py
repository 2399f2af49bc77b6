"""One Cycles scene from an assets.scene.Scene, and its passes rendered frame by frame.

Everything here runs inside one Blender (bpy) process. The scene arrives in world coordinates
(assets.stage) as a list of objects, a camera placement and a light rig; this module builds
whatever it is given, by shape type and material kind, and knows no object by name. Per frame
it poses what moves on its own (simulated strands), sets every foreground object's forward
screen motion (the `flow` attribute) and renders the passes the clip's outputs need, each into
one multilayer EXR whose layers (Combined, the coverage groups' AOVs, flow, Mist, Shadow
Catcher) the converters of render/layers.py turn into the store's arrays.
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
from mathutils import Matrix

from assets.lighting import Rig
from assets.scene import Scene
from assets.shapes import Curves, Mesh, Puffs, SceneObject
from render import frames, layers
from render.layers import DEPTH_RANGE_M, FLOW
from render.materials import SEE_THROUGH, material
from render.spec import ClipSpec


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


# --- objects ------------------------------------------------------------------------------------

def _link(name: str, data) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _mesh(name: str, shape: Mesh) -> bpy.types.Object:
    """A mesh; vertices given per frame play as one shape key per frame, keyed one-hot with linear
    interpolation, so it is exact at whole frames and interpolates between them (motion blur
    ready). Generated texture coordinates come from the first frame: patterns stick to it."""
    verts = shape.vertices.astype(np.float32)
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts[0] if verts.ndim == 3 else verts, [], shape.faces)
    mesh.shade_smooth()
    if shape.uv is not None:
        uv = mesh.uv_layers.new(name="UVMap")
        uv.data.foreach_set("uv", shape.uv.astype(np.float32).ravel())   # loops run face by face, corner by corner
    if shape.material_index is not None:
        mesh.polygons.foreach_set("material_index", shape.material_index.astype(np.int32))
    obj = _link(name, mesh)
    if verts.ndim == 3:
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


def _curves(name: str, shape: Curves) -> bpy.types.Object:
    """Strands as one Curves object, radius per point, melanin per curve."""
    n_strands, n_points = shape.rest.shape[:2]
    curves = bpy.data.hair_curves.new(name)
    curves.add_curves([n_points] * n_strands)
    curves.position_data.foreach_set("vector", shape.rest.astype(np.float32).ravel())
    r = curves.attributes.new("radius", "FLOAT", "POINT")  # reads 0 unless created
    r.data.foreach_set("value", shape.radius.astype(np.float32).ravel())
    m = curves.attributes.new("melanin", "FLOAT", "CURVE")
    m.data.foreach_set("value", shape.melanin.astype(np.float32))
    return _link(name, curves)


def _puffs(name: str, shape: Puffs, mat: bpy.types.Material) -> bpy.types.Object:
    """Puffs of a medium: a point per puff (placed, sized and weighed per frame by `pose`), each
    instanced as a unit sphere scaled to its radius, the medium inside; its `density` reaches the
    shader as the instancer's attribute. Puffs of density 0 are not there."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(shape.centres[0].astype(np.float64).tolist(), [], [])
    for a in ("radius", "density"):
        mesh.attributes.new(a, "FLOAT", "POINT")
    obj = _link(name, mesh)
    tree = bpy.data.node_groups.new(name, "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = tree.nodes, tree.links
    sphere = nodes.new("GeometryNodeMeshIcoSphere")   # its faces cut off the outer 5%, where density is under 1% of the peak
    sphere.inputs["Radius"].default_value, sphere.inputs["Subdivisions"].default_value = 1.0, 2
    dressed = nodes.new("GeometryNodeSetMaterial")
    dressed.inputs["Material"].default_value = mat
    links.new(sphere.outputs["Mesh"], dressed.inputs["Geometry"])
    radius, density = (nodes.new("GeometryNodeInputNamedAttribute") for _ in range(2))
    for node, a in ((radius, "radius"), (density, "density")):
        node.data_type = "FLOAT"
        node.inputs["Name"].default_value = a
    there = nodes.new("FunctionNodeCompare")
    there.data_type, there.operation = "FLOAT", "GREATER_THAN"
    links.new(density.outputs["Attribute"], there.inputs["A"])
    place = nodes.new("GeometryNodeInstanceOnPoints")
    links.new(nodes.new("NodeGroupInput").outputs[0], place.inputs["Points"])
    links.new(there.outputs["Result"], place.inputs["Selection"])
    links.new(dressed.outputs["Geometry"], place.inputs["Instance"])
    links.new(radius.outputs["Attribute"], place.inputs["Scale"])
    links.new(place.outputs["Instances"], nodes.new("NodeGroupOutput").inputs[0])
    obj.modifiers.new(name, "NODES").node_group = tree
    return obj


def _key_transform(obj: bpy.types.Object, matrices: np.ndarray) -> None:
    """A rigid motion (T,4,4), keyed frame by frame (linear keys: motion blur moves the object
    between frames), or one fixed placement (1,4,4)."""
    obj.rotation_mode = "QUATERNION"
    previous = None
    for t, m in enumerate(matrices):
        obj.matrix_world = Matrix(m.tolist())
        q = obj.rotation_quaternion.copy()
        if previous is not None and q.dot(previous) < 0:   # the short way round between keys
            q.negate()
        obj.rotation_quaternion = previous = q
        if len(matrices) > 1:
            obj.keyframe_insert("location", frame=t + 1)
            obj.keyframe_insert("rotation_quaternion", frame=t + 1)


def add_object(o: SceneObject, flow: bool) -> bpy.types.Object:
    if isinstance(o.shape, Puffs):
        return _puffs(o.name, o.shape, material(o.materials[0], flow))
    obj = _mesh(o.name, o.shape) if isinstance(o.shape, Mesh) else _curves(o.name, o.shape)
    for m in o.materials:
        obj.data.materials.append(material(m, flow))
    if o.transform is not None:
        _key_transform(obj, o.transform)
    return obj


def attribute(obj: bpy.types.Object, name: str, values: np.ndarray) -> None:
    """A per-point FLOAT_VECTOR attribute of a mesh or Curves object, set anew."""
    data = obj.data
    a = data.attributes.get(name) or data.attributes.new(name, "FLOAT_VECTOR", "POINT")
    a.data.foreach_set("vector", values.astype(np.float32).ravel())
    if isinstance(data, bpy.types.Curves):
        data.update_tag()
    else:
        data.update()


def pose(staged: "Staged", t: int) -> None:
    """Frame t's state of what is not keyed: simulated strands (and, with motion blur, the velocity
    Cycles blurs them along) and every foreground object's forward screen motion (flow)."""
    spec, scene = staged.spec, staged.scene
    n = spec.n_frames
    for o, obj in staged.objects:
        if isinstance(o.shape, Puffs):
            obj.data.vertices.foreach_set("co", o.shape.centres[t].astype(np.float32).ravel())
            for a in ("radius", "density"):
                obj.data.attributes[a].data.foreach_set("value", getattr(o.shape, a)[t].astype(np.float32))
            obj.data.update()
            continue   # a medium has no surface to carry flow
        if o.per_frame:
            obj.data.position_data.foreach_set("vector", o.points(t).astype(np.float32).ravel())
            if spec.camera["shutter"] > 0 and n > 1:
                lo, hi = max(t - 1, 0), min(t + 1, n - 1)
                attribute(obj, "velocity", (o.points(hi) - o.points(lo)) * (spec.fps / (hi - lo)))
            obj.data.update_tag()
        if staged.flow and not o.plate:
            here = scene.camera.project(o.points(t), t)
            there = scene.camera.project(o.points(t + 1), t + 1) if t + 1 < n else here
            attribute(obj, FLOW, np.column_stack([there - here, np.zeros(len(here))]))


# --- camera and light ---------------------------------------------------------------------------

def add_camera(scene: Scene) -> None:
    """The camera keyed frame by frame (linear keys: motion blur follows the move between frames);
    with depth of field, focused on the eyes as they move (colour and alpha share the defocus)."""
    cam = scene.camera
    data = bpy.data.cameras.new("camera")
    data.sensor_fit, data.sensor_height = "VERTICAL", cam.sensor_mm
    data.clip_start, data.clip_end = 0.05, DEPTH_RANGE_M
    obj = _link("camera", data)
    bpy.context.scene.camera = obj
    _key_transform(obj, cam.matrix_world)
    for t, lens in enumerate(cam.lens_mm):
        data.lens = float(lens)
        data.keyframe_insert("lens", frame=t + 1)
        if cam.focus_m is not None:
            data.dof.focus_distance = float(cam.focus_m[t])
            data.dof.keyframe_insert("focus_distance", frame=t + 1)
    record = cam.record
    data.dof.use_dof = record["dof"] is not None
    if record["dof"]:
        data.dof.aperture_fstop = record["dof"]["f_stop"]
    bpy.context.scene.frame_set(1)


def _world_studio(w: dict, nodes, links) -> None:
    nodes["Background"].inputs["Color"].default_value = (*w["color"], 1.0)
    nodes["Background"].inputs["Strength"].default_value = w["strength"]


def _world_sky(w: dict, nodes, links) -> None:
    sky = nodes.new("ShaderNodeTexSky")
    sky.sky_type = "MULTIPLE_SCATTERING"
    sky.sun_rotation = w["sun_rotation"]
    sky.sun_elevation = math.radians(w["sun_elevation_deg"])
    sky.sun_size = math.radians(w["sun_size_deg"])
    sky.air_density, sky.aerosol_density, sky.ozone_density = w["air_density"], w["aerosol_density"], w["ozone_density"]
    links.new(sky.outputs["Color"], nodes["Background"].inputs["Color"])
    nodes["Background"].inputs["Strength"].default_value = w["strength"]


def _world_environment(w: dict, nodes, links) -> None:
    """A graded sky over a ground (a studio HDR's large-scale light); its sun and window are lamps."""
    up = nodes.new("ShaderNodeSeparateXYZ")
    links.new(nodes.new("ShaderNodeTexCoord").outputs["Generated"], up.inputs[0])  # the world's view direction
    colours = []
    for key in ("horizon_temperature_k", "zenith_temperature_k"):
        bb = nodes.new("ShaderNodeBlackbody")
        bb.inputs["Temperature"].default_value = w[key]
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
    ground.inputs["B"].default_value = (w["ground_albedo"],) * 3 + (1.0,)
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    links.new(below.outputs[0], mix.inputs["Factor"])
    links.new(sky.outputs["Result"], mix.inputs["A"])
    links.new(ground.outputs["Result"], mix.inputs["B"])
    links.new(mix.outputs["Result"], nodes["Background"].inputs["Color"])
    nodes["Background"].inputs["Strength"].default_value = w["strength"]


WORLDS = {"studio": _world_studio, "sky": _world_sky, "environment": _world_environment}


def add_lights(rig: Rig) -> None:
    for lamp in rig.lamps:
        data = bpy.data.lights.new(lamp["name"], lamp["type"])
        data.energy = lamp["energy"]
        data.use_temperature, data.temperature = True, lamp["temperature_k"]
        if "size_m" in lamp:
            data.size = lamp["size_m"]
        if "angle_deg" in lamp:
            data.angle = math.radians(lamp["angle_deg"])
        _link(lamp["name"], data).matrix_world = Matrix(lamp["matrix"].tolist())
    world = bpy.data.worlds.new("world")
    WORLDS[rig.world["kind"]](rig.world, world.node_tree.nodes, world.node_tree.links)
    bpy.context.scene.world = world


# --- render settings and passes ------------------------------------------------------------------

GPU_KINDS = {"auto": ("OPTIX", "CUDA"), "gpu": ("OPTIX", "CUDA"), "optix": ("OPTIX",), "cuda": ("CUDA",)}


def gpu_devices(kind: str) -> list[str]:
    """The names of the devices Cycles finds of one kind (OPTIX, CUDA); [] when none or not built in."""
    prefs = bpy.context.preferences.addons["cycles"].preferences
    try:
        prefs.compute_device_type = kind
    except TypeError:   # a Blender built without that backend
        return []
    prefs.get_devices()
    return [d.name for d in prefs.devices if d.type == kind]


def select_device(requested: str) -> str:
    """auto and gpu: OptiX, then CUDA (auto: then the CPU); optix, cuda: that one; returns what is used.
    A GPU asked for by name that Cycles does not find is an error."""
    scene = bpy.context.scene
    for kind in GPU_KINDS.get(requested, ()):
        if gpu_devices(kind):
            prefs = bpy.context.preferences.addons["cycles"].preferences
            prefs.compute_device_type = kind
            for d in prefs.devices:
                d.use = d.type == kind
            scene.cycles.device = "GPU"
            return kind
    if requested != "auto" and requested != "cpu":
        raise RuntimeError(f"cycles.device={requested} but Cycles finds no {' or '.join(GPU_KINDS[requested])} device")
    scene.cycles.device = "CPU"
    return "CPU"


def configure(spec: ClipSpec, threads: int) -> str:
    c = spec.cycles
    scene = bpy.context.scene
    # Shape keys, rigid riders and the camera are keyed per frame: linear keys make sub-frames
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
    cy.volume_biased, cy.volume_step_rate = c["volume_biased"], c["volume_step_rate"]
    cy.use_denoising = c["denoise"]
    cy.denoiser = "OPENIMAGEDENOISE"
    scene.cycles_curves.shape = c["curve_shape"]
    # One shutter for every pass: coverage measures the blurred coverage the colour shows.
    scene.render.use_motion_blur = spec.camera["shutter"] > 0
    scene.render.motion_blur_shutter = max(spec.camera["shutter"], 1e-3)
    scene.render.motion_blur_position = "CENTER"
    img = scene.render.image_settings
    img.file_format, img.color_mode, img.color_depth, img.exr_codec = "OPEN_EXR", "RGBA", "32", "NONE"
    img.media_type = "MULTI_LAYER_IMAGE"   # one file, every layer of the view layer
    return select_device(c["device"])


def add_layers(parts: tuple[str, ...], flow: bool, depth: bool, shadow: bool) -> None:
    """What each render writes beside Combined: a value AOV per coverage group, the flow colour
    AOV, the Mist pass (linear distance over DEPTH_RANGE_M: averaged over the pixel like alpha) and
    the shadow catcher's multiplier."""
    scene = bpy.context.scene
    layer = scene.view_layers[0]
    for name in parts:
        aov = layer.aovs.add()
        aov.name, aov.type = name, "VALUE"   # a new AOV is COLOR unless told
    if flow:
        aov = layer.aovs.add()
        aov.name, aov.type = FLOW, "COLOR"
    if depth:
        layer.use_pass_mist = True
        mist = scene.world.mist_settings
        mist.start, mist.depth, mist.falloff = 0.0, DEPTH_RANGE_M, "LINEAR"
    layer.cycles.use_pass_shadow_catcher = shadow


@dataclass
class Staged:
    """A built scene: its record, Blender's object for each scene object, and what it writes."""
    spec: ClipSpec
    scene: Scene
    objects: list[tuple[SceneObject, bpy.types.Object]]
    passes: tuple[str, ...]    # the renders each frame needs, in order
    flow: bool
    shadow: bool
    device: str
    cover: layers.Coverage         # the coverage groups it writes (render/layers.py)


def build(spec: ClipSpec, scene: Scene, threads: int = 0) -> Staged:
    """The clip's Blender scene, ready to pose and render; which passes and layers it renders
    follows from the spec's outputs."""
    made_by = {o["made_by"] for o in spec.outputs.values()}
    converters = {o["convert"] for o in spec.outputs.values()}
    for name, o in spec.outputs.items():   # a label output must know every coverage group the scene writes
        if o["convert"] == "label" and set(scene.parts()) - set(o["parts"]):
            raise ValueError(f"output {name}: the scene's coverage groups {sorted(set(scene.parts()) - set(o['parts']))} "
                             f"are not in its parts ({', '.join(o['parts'])}): add them to clipstore.outputs.PARTS")
    flow, shadow = "flow" in converters, "multiplier" in converters
    reset()
    device = configure(spec, threads)
    bpy.context.scene.render.use_persistent_data = True
    objects = [(o, add_object(o, flow)) for o in scene.objects]
    add_camera(scene)
    add_lights(scene.lights)
    add_layers(scene.parts() + scene.instances(), flow, "distance" in converters, shadow)
    passes = ("colour",) + (("coverage",) if spec.cycles["alpha_samples"] else ()) + \
             (("plate",) if "plate" in made_by else ())
    see_through = tuple(dict.fromkeys(m["part"] for o in scene.objects for m in o.materials
                                      if m["kind"] in SEE_THROUGH and m.get("part")))
    residual = next((m["part"] for o in scene.objects for m in o.materials if m["kind"] == "volume"), None)
    cover = layers.Coverage(scene.parts(), see_through, residual, scene.volume_owner())
    return Staged(spec, scene, objects, passes, flow, shadow, device, cover)


def use_pass(staged: Staged, name: str) -> None:
    """Switch the scene to one pass.

    colour: the person shaded as the camera sees them over a transparent film; the set is unseen
    but bounces light, and with the shadow output on it is a shadow catcher the camera sees
    (its shadow layer), which leaves Combined as it was. coverage: flat emission, no bounces, no
    denoising, adaptive sampling up to alpha_samples (coverage depends on geometry alone, so this
    gives the colour pass's alpha at a fraction of the cost per sample; the samples go where the
    estimate is still noisy: strands and edges). plate: the person removed, the set seen, the
    film opaque, shaded as the colour pass. scene: the person standing in the set as a camera would
    see them, film opaque (no output: what bench_layers holds the layers against).
    """
    c = staged.spec.cycles
    scene = bpy.context.scene
    coverage, plate, opaque = name == "coverage", name == "plate", name in ("plate", "scene")
    scene.render.film_transparent = not opaque
    for o, obj in staged.objects:
        if o.plate:
            obj.visible_camera = opaque or (name == "colour" and staged.shadow)
            obj.is_shadow_catcher = name == "colour" and staged.shadow
        else:
            obj.hide_render = plate
    for mat in bpy.data.materials:
        if mat.node_tree and "coverage" in mat.node_tree.nodes:
            mat.node_tree.nodes["coverage"].inputs["Fac"].default_value = 1.0 if coverage else 0.0
    cy = scene.cycles
    cy.samples = c["alpha_samples"] if coverage else c["samples"]
    cy.max_bounces = 0 if coverage else c["max_bounces"]
    cy.use_denoising = False if coverage else c["denoise"]
    cy.use_adaptive_sampling = coverage and c["alpha_adaptive_threshold"] > 0
    if coverage:
        cy.adaptive_threshold = c["alpha_adaptive_threshold"]
        cy.adaptive_min_samples = c["alpha_min_samples"]


def render_layers(path: Path) -> tuple[dict[str, np.ndarray], float]:
    """Render the current frame into one multilayer EXR at `path`; its layers and Cycles' seconds."""
    bpy.context.scene.render.filepath = str(path)
    start = time.perf_counter()
    with quiet_stdout():
        bpy.ops.render.render(write_still=True)
    seconds = time.perf_counter() - start
    if not path.is_file():
        raise RuntimeError(f"Cycles wrote no frame to {path}")
    return frames.read_layers(str(path)), seconds


@dataclass(frozen=True)
class Rendered:
    arrays: dict[str, np.ndarray]   # every output of the spec, in the store's dtypes
    attrs: dict[str, dict]          # what an output records of this clip beside its declaration (a legend, ...)
    seconds: dict[str, float]       # Cycles' wall time per pass, all frames rendered
    pose_seconds: float             # posing strands and setting flow, all frames rendered
    convert_seconds: float          # layers -> the outputs' arrays, all frames rendered
    device: str
    camera: dict


def build_and_render(spec: ClipSpec, scene: Scene, threads: int = 0, workdir: str | None = None,
                     on_frame: Callable[[int], None] | None = None, frames_to_render: int | None = None) -> Rendered:
    """Render every frame's passes (or the first `frames_to_render`: a cost probe) and convert them
    to the spec's outputs as they come (render/layers.py). Persistent data keeps the synced scene
    and its BVH between the passes. `on_frame(n)` is told each time n frames are finished."""
    staged = build(spec, scene, threads)
    base = workdir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    clip = layers.Clip.start(spec, staged.cover)
    seconds = dict.fromkeys(staged.passes, 0.0)
    pose_s = convert_s = 0.0
    with tempfile.TemporaryDirectory(prefix="gvm-render-", dir=base) as tmp:
        for t in range(spec.n_frames if frames_to_render is None else frames_to_render):
            bpy.context.scene.frame_set(t + 1)
            start = time.perf_counter()
            pose(staged, t)
            pose_s += time.perf_counter() - start
            frame = {}
            for name in staged.passes:
                use_pass(staged, name)
                frame[name], s = render_layers(Path(tmp) / f"{name}{t:04d}.exr")
                seconds[name] += s
            start = time.perf_counter()
            clip.add(t, frame)
            convert_s += time.perf_counter() - start
            if on_frame is not None:
                on_frame(t + 1)
    reset()
    return Rendered(clip.arrays, clip.attrs(), seconds, pose_s, convert_s, staged.device,
                    {**scene.camera.record, "exposure_gain": clip.gain})
