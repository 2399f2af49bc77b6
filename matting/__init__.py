"""The matting floor: method-agnostic pieces that the model side and pseudo-labelling share.

Video in and mattes out (`video`), the VideoMatte240K folder layout (`layout`), person
segmentation (`segment`), the classical chain (`classical`: trimap -> closed-form alpha) and
foreground estimation (`foreground`), the field's metrics (`metrics`) and their evaluation
(`evaluate`), and contact sheets (`sheet`). It imports neither gvm_train nor pipelines, nor bpy.
"""

from core import stops

stops.starting()   # `python -m` one of this package's apps: a stop while it starts ends it at once
