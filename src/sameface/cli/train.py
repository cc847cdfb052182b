"""`sameface train METHOD`: train an encoder method's weights on a prepared dataset."""

from __future__ import annotations

from ..errors import SamefaceError
from ..locks import FolderLock
from .common import add_device_options, process_device


def cmd_train(args) -> int:
    from ..methods import get_method
    from ..models import load_base_model
    from ..training.distributed import distributed_context
    from .methods import config_from_args

    method = get_method(args.method)
    if method.kind != "encoder" or method.train is None:
        raise SamefaceError(f"{method.name} trains per identity: use `sameface personalize`")
    config = config_from_args(method.config_cls, args)
    ctx = distributed_context()
    # One run per --out; the other processes of this run are its main process's helpers.
    _lock = FolderLock(args.out, "sameface train").acquire() if ctx.is_main else None
    device, dtype = process_device(args, ctx, training=True)
    base = load_base_model(args.base, device=device, dtype=dtype)
    from ..methods.pulid import ClipVision

    vision = ClipVision.load(config.clip_vision, device=device)
    out = method.train(
        args.data,
        base,
        config,
        args.out,
        vision=vision,
        init_from=args.init_from,
        resume=not args.no_resume,
        context=ctx,
    )
    if ctx.is_main:
        print(f"{method.name} stage {config.stage}: weights in {out}")
    return 0


def add_parsers(sub, common) -> None:
    """Add `train` to the sub-command parser."""
    p = sub.add_parser(
        "train",
        parents=[common],
        help="train an encoder method (pulid) on a prepared dataset",
        description="Train one stage of an encoder method on a dataset made by `sameface data prepare`. "
        "Resumable (run the same command again); several processes with "
        "`accelerate launch --multi_gpu --num_processes N -m sameface.cli train ...`.",
    )
    p.add_argument("method", choices=["pulid"], help="the method to train")
    p.add_argument("--config", metavar="FILE", help="YAML settings, e.g. configs/pulid/sd15.yaml")
    p.add_argument(
        "--data", required=True, metavar="DIR", help="prepared dataset (`sameface data prepare`)"
    )
    p.add_argument(
        "--base",
        required=True,
        metavar="MODEL",
        help="base model: diffusers folder, .safetensors or hub id",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (weights, checkpoints, train_log.jsonl)",
    )
    p.add_argument(
        "--stage", type=int, choices=[1, 2, 3], help="1 diffusion, 2 + ID loss, 3 + alignment"
    )
    p.add_argument(
        "--init-from", metavar="DIR", help="start from this trained folder (the previous stage)"
    )
    p.add_argument("--steps", type=int, help="optimisation steps")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--seed", type=int, help="RNG seed")
    p.add_argument("--resolution", type=int, help="training resolution (default: the base model's)")
    p.add_argument("--mixed-precision", choices=["no", "bf16"], help="bf16 autocast")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="any setting, e.g. --set lambda_id=0.5"
    )
    p.add_argument(
        "--no-resume", action="store_true", help="ignore checkpoints in --out and start over"
    )
    add_device_options(p)
    p.set_defaults(func=cmd_train, init=None, reparam_base=None, celeb_bank=None, adapter=None)
