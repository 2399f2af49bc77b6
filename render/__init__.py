"""bpy only: one Cycles scene from one ClipSpec, frames back as numpy. Imports neither Ray nor
Hydra and knows nothing of the store."""
