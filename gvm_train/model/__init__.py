"""The generative matting model, grouped by role: the model itself (`gvm`: modules, encode,
decode, one UNet call), building it from config or a folder (`presets`), what it is trained to
predict and its losses (`objectives`), and which parameters train (`regimes`). Models never know
pipelines: gvm_train.pipeline owns the saved folder."""
from gvm_train.model.gvm import OBJECTIVES, PRESETS, GVMModel, check_sigmas
from gvm_train.model.presets import build_model, build_scheduler, load_unet_vae

__all__ = ["OBJECTIVES", "PRESETS", "GVMModel", "build_model", "build_scheduler", "check_sigmas", "load_unet_vae"]
