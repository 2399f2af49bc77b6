"""What scenes are made of, and a sampler beside each: body models (`body`, `standin`), skin,
motions, hair, camera and lighting. Each `sample(config section, seed)` draws one clip's values
from the ranges in conf/; the numbers live there, never here."""
