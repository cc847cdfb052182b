"""Celebrity bank: names a base model knows, with their face embeddings and token ids.

Modified textual inversion (seeds/001, Livshits 2023) initialises the identity's token
embeddings from celebrity names: "id" takes the name tokens of the celebrity whose face is
most similar to the identity's, "rand2" two random vectors from the vectorised celebrity
names. The paper built its list by generating each celebrity with the model and keeping the
ones face recognition confirms. `build_bank_from_model` does that (resumable, shardable
across processes); `build_bank_from_photos` embeds real photos instead (one folder per
person) and can serve as the reference the generated faces are checked against.
DreamIdentity's self-augmented data starts from the same names.

A bank is a folder holding `bank.safetensors` (embeddings, consistency, face counts) and
`bank.json` (names, token ids, metadata). Nothing is pickled.
"""

from ...training.distributed import DistributedContext, distributed_context
from .bank import FORMAT_VERSION, META_FILE, TENSORS_FILE, CelebrityBank
from .from_model import (
    DEFAULT_NEGATIVE_PROMPT,
    DEFAULT_PROMPT,
    PARTS_DIR,
    build_bank_from_model,
    consolidate_bank,
)
from .from_photos import build_bank_from_photos
from .names import load_celebrity_names, name_seed, parse_names

__all__ = [
    "DEFAULT_NEGATIVE_PROMPT",
    "DEFAULT_PROMPT",
    "FORMAT_VERSION",
    "META_FILE",
    "PARTS_DIR",
    "TENSORS_FILE",
    "CelebrityBank",
    "DistributedContext",
    "build_bank_from_model",
    "build_bank_from_photos",
    "consolidate_bank",
    "distributed_context",
    "load_celebrity_names",
    "name_seed",
    "parse_names",
]
