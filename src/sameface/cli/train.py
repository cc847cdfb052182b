"""`sameface train METHOD`: train an encoder method's weights on a prepared dataset."""

from __future__ import annotations

from ..errors import SamefaceError
from ..locks import FolderLock
from .common import add_device_options, process_device


def cmd_train(args) -> int:
    from ..methods import get_method
    from ..models import load_base_model
    from ..training.distributed import distributed_context
    from .methods import method_config

    method = get_method(args.method)
    if not method.trains:
        raise SamefaceError(f"{method.name} trains per identity: use `sameface personalize`")
    config = method_config(method, args)
    extra = {"init_from": args.init_from} if args.init_from else {}
    for name in _train_inputs():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in method.train_inputs:
            raise SamefaceError(f"--{name.replace('_', '-')} is not an input of {method.name}")
        extra[name] = value
    ctx = distributed_context()
    # One run per --out; the other processes of this run are its main process's helpers.
    _lock = FolderLock(args.out, "sameface train").acquire() if ctx.is_main else None
    device, dtype = process_device(args, ctx, training=True)
    base = load_base_model(args.base, device=device, dtype=dtype)
    out = method.train(
        args.data, base, config, args.out, resume=not args.no_resume, context=ctx, **extra
    )
    if ctx.is_main:
        stage = f" stage {config.stage}" if hasattr(config, "stage") else ""
        print(f"{method.name}{stage}: weights in {out}")
    return 0


def _train_inputs() -> dict[str, tuple[str, list[str]]]:
    """Every registered trainer's further inputs: keyword -> (help, methods taking it)."""
    from ..methods import available_methods, get_method

    out: dict[str, tuple[str, list[str]]] = {}
    for n in available_methods():
        for key, text in get_method(n).train_inputs.items():
            out.setdefault(key, (text, []))[1].append(n)
    return out


def add_parsers(sub, common) -> None:
    """Add `train` to the sub-command parser: every registered method that has a trainer."""
    from ..methods import available_methods, get_method
    from .config_flags import add_config_flags

    trainers = {n: get_method(n) for n in available_methods() if get_method(n).trains}
    p = sub.add_parser(
        "train",
        parents=[common],
        help=f"train an encoder method ({', '.join(trainers)}) on a prepared dataset",
        description="Train an encoder method on a dataset made by `sameface data prepare`. "
        "Resumable (run the same command again); several processes with "
        "`accelerate launch --multi_gpu --num_processes N -m sameface.cli train ...`.",
    )
    p.add_argument("method", choices=sorted(trainers), help="the method to train")
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
        "--init-from",
        metavar="DIR",
        help="start from this trained folder (e.g. the previous stage)",
    )
    for key, (text, owners) in _train_inputs().items():
        p.add_argument(
            f"--{key.replace('_', '-')}", metavar="DIR", help=f"{', '.join(owners)}: {text}"
        )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="any setting, e.g. --set lambda_id=0.5"
    )
    p.add_argument(
        "--no-resume", action="store_true", help="ignore checkpoints in --out and start over"
    )
    add_device_options(p)
    add_config_flags(p, {n: m.config_cls for n, m in trainers.items()})
    p.set_defaults(func=cmd_train)
