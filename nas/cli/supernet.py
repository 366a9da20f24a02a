"""``nas supernet train`` / ``nas supernet eval``: train the weight-sharing supernet once; the inherited top-1 of
archs of a trained one. ``--torch-device`` is where they run (``--device`` means a latency device elsewhere; its
old spelling here still works for one release, with a note)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from nas.cli._common import (
    Commands,
    Parser,
    add_output_args,
    add_space_arg,
    emit,
    fraction,
    int_at_least,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
)
from nas.errors import UsageError
from supernet.config import EVAL_BN_IMAGES, EVAL_VAL_IMAGES, TrainConfig

TORCH_DEVICES = ("cpu", "cuda")


def _add_torch_device(p: argparse.ArgumentParser, legacy: bool = True) -> None:
    p.add_argument("--torch-device", choices=TORCH_DEVICES, default=None,
                   help="where to run (default: cuda if available, else cpu)")
    if legacy:   # train and eval only: in rank (as everywhere else) --device is a latency device
        p.add_argument("--device", dest="legacy_device", choices=TORCH_DEVICES, default=None,
                       help=argparse.SUPPRESS)   # deprecated spelling of --torch-device


def register(commands: Commands) -> None:
    group = commands.add_parser("supernet", help="train the weight-sharing supernet")
    sub = group.add_subparsers(dest="supernet_command", metavar="SUBCOMMAND", parser_class=Parser)
    sub.required = True

    d = TrainConfig.default
    train = sub.add_parser(
        "train", help="train the supernet once (sandwich rule + in-place distillation); resumable",
        description="Each step trains the largest subnet on the labels and the smallest plus --num-random random "
                    "subnets on the largest's predictions, with AdamW and a warmup + cosine schedule (in a space "
                    "with several token mixers, the largest and smallest take each mixer in turn). The top-1 of "
                    "the largest and smallest subnets (and of the largest with each other mixer), BatchNorm "
                    "recalibrated, is measured after every epoch.")
    add_space_arg(train)
    train.add_argument("--data", required=True,
                       help="ImageFolder tree (DIR/train and DIR/val, or DIR/<class>/<image>), or a dataset that ships "
                            "as code: builtin:objects[:difficulty=0.5,classes=30,...] (procedurally drawn objects, "
                            "hard) or builtin:digits (scikit-learn's handwritten digits, easy)")
    train.add_argument("--epochs", type=positive_int, required=True, help="passes over the training split")
    train.add_argument("--out", required=True, help="checkpoint file (written atomically while training)")
    train.add_argument("--resume", action="store_true", help="continue the training saved in --out")
    train.add_argument("--batch-size", type=positive_int, default=d("batch_size"),
                       help=f"images per step, over all workers (default {d('batch_size')})")
    train.add_argument("--lr", type=positive_float, default=d("lr"), help=f"peak AdamW learning rate "
                                                                          f"(default {d('lr'):g})")
    train.add_argument("--weight-decay", type=non_negative_float, default=d("weight_decay"),
                       help=f"decoupled weight decay on weights, not norms or biases (default {d('weight_decay')})")
    train.add_argument("--warmup-epochs", type=non_negative_float, default=d("warmup_epochs"),
                       help=f"linear warm-up before the cosine schedule, in epochs (default {d('warmup_epochs')})")
    train.add_argument("--num-random", type=non_negative_int, default=d("num_random"),
                       help=f"random subnets per step besides the largest and smallest (default {d('num_random')})")
    train.add_argument("--kd", default=d("kd"),
                       help=f"how the students learn from the largest subnet: kl (KL divergence, BigNAS) or alpha "
                            f"(AlphaNet's adaptive alpha-divergence) (default {d('kd')})")
    train.add_argument("--sampling", default=d("sampling"),
                       help=f"how each step's random subnets are drawn: uniform, or complexity (similar sizes in "
                            f"adjacent steps, sweeping the size range, after ElasticViT) (default {d('sampling')})")
    train.add_argument("--label-smoothing", type=fraction, default=d("label_smoothing"),
                       help=f"label smoothing of the losses on labels (the largest subnet's; the others learn from it) "
                            f"(default {d('label_smoothing')})")
    train.add_argument("--max-train-images", type=positive_int, default=d("max_train_images"),
                       help="train on a fixed random subset of this many images")
    train.add_argument("--val-images", type=positive_int, default=d("val_images"),
                       help="validation images per evaluation")
    train.add_argument("--bn-images", type=positive_int, default=d("bn_images"),
                       help="training images to recalibrate BatchNorm with before each evaluation")
    train.add_argument("--num-classes", type=positive_int, default=d("num_classes"),
                       help="outputs of the classifier head (default: the data's number of classes)")
    train.add_argument("--seed", type=seed, default=d("seed"),
                       help=f"seed of the initialisation, data order and sampled subnets (default {d('seed')})")
    train.add_argument("--init-timm", default=d("init_timm"), metavar="FILE",
                       help="start from a timm EfficientFormer state dict (.safetensors or weights-only .pth), "
                            "e.g. efficientformer_l7's, loaded into the supernet's slots")
    train.add_argument("--gumbel", action="store_true",
                       help="also learn EfficientFormer's MetaPath importances: each step adds one straight-through "
                            "Gumbel-softmax draw of every position's path ({MB4D, identity}, plus each MB3D mixer "
                            "where 3D is allowed) at full width; read them with nas supernet importance, and "
                            "--strategy slim uses them")
    train.add_argument("--tau-start", type=positive_float, default=d("tau_start"),
                       help=f"Gumbel-softmax temperature at the first step (default {d('tau_start'):g})")
    train.add_argument("--tau-end", type=positive_float, default=d("tau_end"),
                       help=f"temperature at the last step, annealed exponentially (default {d('tau_end'):g})")
    train.add_argument("--alpha-lr", type=positive_float, default=d("alpha_lr"),
                       help=f"Adam learning rate of the importances (default {d('alpha_lr'):g})")
    train.add_argument("--workers", type=non_negative_int, default=0,
                       help="data-loading processes per trainer (default 0: the training process); results do not "
                            "depend on it")
    _add_torch_device(train)
    train.add_argument("--save-every", type=positive_int, default=100,
                       help="also checkpoint every N steps, besides each epoch's end (default 100)")
    recipe = train.add_argument_group("timm's training pipeline (each off by default)")
    recipe.add_argument("--opt", default=d("opt"), help=f"optimizer, any name timm.optim.create_optimizer_v2 "
                                                        f"knows (default {d('opt')})")
    recipe.add_argument("--mixup", type=non_negative_float, default=d("mixup"),
                        help="mixup alpha of the largest subnet's images and labels (timm.data.Mixup; 0: off)")
    recipe.add_argument("--cutmix", type=non_negative_float, default=d("cutmix"), help="cutmix alpha (0: off)")
    recipe.add_argument("--aa", dest="auto_augment", default=d("auto_augment"), metavar="POLICY",
                        help="timm RandAugment policy for ImageFolder data, e.g. rand-m9-mstd0.5-inc1")
    recipe.add_argument("--reprob", type=fraction, default=d("reprob"),
                        help="random-erasing probability for ImageFolder data (timm; 0: off)")
    recipe.add_argument("--ema-decay", type=fraction, default=d("ema_decay"),
                        help="keep an EMA of the supernet weights (timm ModelEmaV3) with this decay, e.g. 0.9998; "
                             "evaluation and the checkpoint then use it (0: off)")
    recipe.add_argument("--amp", choices=("none", "bf16", "fp16"), default=d("amp"),
                        help="mixed precision with torch.autocast: bf16 (CPU or CUDA) or fp16 (CUDA, with a grad "
                             "scaler); default none")
    recipe.add_argument("--accum-steps", type=positive_int, default=d("accum_steps"),
                        help="split each step's batch into this many micro-batches (gradient accumulation; the "
                             "optimiser still steps once per --batch-size images)")
    recipe.add_argument("--teacher", default=d("teacher"), metavar="TIMM_MODEL",
                        help="hard distillation of the largest subnet from this timm model (DeiT-style: half the "
                             "loss on its top class), e.g. regnety_160; needs --teacher-weights")
    recipe.add_argument("--teacher-weights", default=d("teacher_weights"), metavar="FILE",
                        help="the teacher's state dict (.safetensors or weights-only .pth); nothing is downloaded")
    recipe.add_argument("--log-dir", default=None, metavar="DIR",
                        help="also write TensorBoard scalars here (loss and lr per step; per epoch loss, lr, "
                             "images/s, top-1); the per-epoch CSV next to --out is always written")
    scale = train.add_argument_group("data parallel on Ray Train")
    scale.add_argument("--num-workers", type=positive_int, default=None,
                       help="train on this many Ray Train workers (DDP-style: each takes its slice of every batch; "
                            "--batch-size stays the global batch). Default: one local process")
    scale.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="join this Ray cluster (e.g. ray://head:10001 or auto) instead of starting a local Ray")
    scale.add_argument("--ray-storage", default=None, metavar="PATH_OR_URI",
                       help="where Ray Train keeps the run's checkpoints (default: OUT.ray next to --out; a shared "
                            "folder or s3:// URI on a multi-node cluster)")
    scale.add_argument("--max-failures", type=non_negative_int, default=0,
                       help="restart the workers from the last checkpoint this many times when one dies")
    scale.add_argument("--sync-bn", action="store_true",
                       help="BatchNorm statistics over the global batch (all workers), so the result does not depend "
                            "on --num-workers")
    add_output_args(train)
    train.set_defaults(func=train_supernet)

    importance = sub.add_parser(
        "importance", help="EfficientFormer's MetaPath and stage importances of a supernet trained with --gumbel",
        description="Per block position: the probability of each path (softmax of α) and the importance "
                    "s = p(4D)/p(I), or (p(4D) + sum of p(3D))/p(I) where MB3D is allowed; a stage's importance is "
                    "the sum of its positions'. Slimming sets the least important position to identity first.")
    importance.add_argument("supernet", metavar="CKPT", help="checkpoint of nas supernet train --gumbel")
    importance.add_argument("--plot", metavar="PNG", help="bar chart of the importances (default: CKPT with "
                                                         ".importance.png)")
    add_output_args(importance, progress=False)
    importance.set_defaults(func=show_importance)

    _register_rank(sub)

    evaluate = sub.add_parser(
        "eval", help="top-1 of inherited weights for archs of a trained supernet (BatchNorm recalibrated)")
    evaluate.add_argument("--supernet", required=True, metavar="CKPT", help="checkpoint of nas supernet train")
    evaluate.add_argument("--data", required=True, help="ImageFolder tree (DIR/train and DIR/val) or builtin:NAME")
    evaluate.add_argument("--arch", action="append", metavar="PRESET_FILE_OR_RUN",
                          help="arch to evaluate (repeatable): a preset, an arch JSON file or a nas search run "
                               "directory (default: the largest, the smallest, the largest with each other mixer, "
                               "and the presets)")
    evaluate.add_argument("--val-images", type=positive_int, default=EVAL_VAL_IMAGES,
                          help=f"validation images scored (default {EVAL_VAL_IMAGES})")
    evaluate.add_argument("--bn-images", type=positive_int, default=EVAL_BN_IMAGES,
                          help=f"training images BatchNorm is recalibrated on first (default {EVAL_BN_IMAGES})")
    _add_torch_device(evaluate)
    add_output_args(evaluate)
    evaluate.set_defaults(func=evaluate_supernet)


def _register_rank(sub: Any) -> None:
    rank = sub.add_parser(
        "rank", help="does the supernet rank archs as training each alone would? (Kendall tau with intervals)",
        description="Spreads --archs archs over the latency range of a device's table (the smallest and largest "
                    "included), scores each with its inherited weights (BatchNorm recalibrated) and with the "
                    "training-free proxies (the search's capacity proxy, the parameter count, SynFlow, NASWOT, ZiCo, "
                    "GradNorm), trains each alone from scratch with the supernet's own recipe, and reports Kendall "
                    "tau, Spearman rho and top-k overlap of every score against stand-alone top-1, with bootstrap "
                    "95% intervals, beside the noise floor (one arch trained with --seeds seeds). Resumable "
                    "(--resume); the trainings can go to Ray workers. On ImageNet this is the check to run on the "
                    "cluster before trusting a search.")
    rank.add_argument("supernet", metavar="CKPT", help="checkpoint of nas supernet train")
    rank.add_argument("--data", help="ImageFolder tree or builtin:NAME (default: the data the supernet was trained "
                                     "on)")
    rank.add_argument("--archs", type=int_at_least(1), default=12,
                      help="archs compared, spread over the latency range (default 12; at least 3)")
    rank.add_argument("--epochs", type=positive_int, default=None,
                      help="epochs of each stand-alone training (default: the supernet's own, the same schedule: a "
                           "proxy for training each arch to convergence; fewer ranks like the full schedule only "
                           "approximately)")
    rank.add_argument("--seeds", type=int_at_least(1), default=3,
                      help="trainings of the median-latency arch, for the noise floor (default 3; at least 2)")
    rank.add_argument("--device", default="iphone12",
                      help="latency device whose table the archs are spread over (default iphone12; its estimate "
                           "is made for this space when no table exists)")
    rank.add_argument("--lut", metavar="FILE", help="that device's table (default: the device's table of the space)")
    rank.add_argument("--space", help="the checkpoint's space, checked when given")
    rank.add_argument("--seed", type=seed, default=0, help="seed of the arch sample (default 0)")
    rank.add_argument("--top-k", type=positive_int, default=None,
                      help="k of the top-k overlap (default: a quarter of --archs, at least 2)")
    rank.add_argument("--bootstrap", type=int_at_least(100), default=2000,
                      help="bootstrap draws of each 95%% interval (default 2000)")
    rank.add_argument("--val-images", type=positive_int, default=None,
                      help="validation images scored per arch (default: the supernet's evaluation recipe)")
    rank.add_argument("--bn-images", type=positive_int, default=None,
                      help="training images BatchNorm is recalibrated on (default: the supernet's)")
    recipe = rank.add_argument_group("the stand-alone recipe (default: the supernet's, from the checkpoint)")
    recipe.add_argument("--batch-size", type=positive_int, default=None, help="images per step")
    recipe.add_argument("--lr", type=positive_float, default=None, help="peak learning rate")
    recipe.add_argument("--warmup-epochs", type=non_negative_float, default=None, help="linear warm-up, in epochs")
    rank.add_argument("--out", metavar="DIR", help="state, report.json and rank.png (default: CKPT with .rank)")
    rank.add_argument("--resume", action="store_true", help="finish the check saved in --out")
    scale = rank.add_argument_group("where the trainings run")
    scale.add_argument("--num-workers", type=positive_int, default=None,
                       help="train on this many Ray workers at once (default: here, one after the other)")
    scale.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (with --num-workers)")
    scale.add_argument("--jobs", type=positive_int, default=None,
                       help="trainings at once in local processes (default: one per CPU core; 1 with "
                            "--torch-device cuda)")
    scale.add_argument("--threads", type=positive_int, default=None,
                       help="intra-op threads per training (default: the cores divided among --jobs or "
                            "--num-workers); the figures repeat exactly for the same value")
    _add_torch_device(rank, legacy=False)
    add_output_args(rank)
    rank.set_defaults(func=rank_supernet)


def rank_supernet(args: argparse.Namespace) -> int:
    from nas.ranking.check import RankSettings, run_check

    recipe = {k: getattr(args, k) for k in ("batch_size", "lr", "warmup_epochs") if getattr(args, k) is not None}
    settings = RankSettings(
        checkpoint=args.supernet, data=args.data, archs=args.archs, epochs=args.epochs, seeds=args.seeds,
        device=args.device, lut=args.lut, space=args.space, seed=args.seed, top_k=args.top_k,
        bootstrap=args.bootstrap, val_images=args.val_images, bn_images=args.bn_images, recipe=recipe, out=args.out,
        resume=args.resume, workers=args.num_workers, ray_address=args.ray_address, jobs=args.jobs,
        threads=args.threads,
        torch_device=_torch_device(args), progress=not args.no_progress)
    report = run_check(settings)

    def text() -> None:
        from nas.ranking.report import print_report

        print_report(report)

    emit(args, report, text)
    return 0


def _torch_device(args: argparse.Namespace) -> str:
    """Where to run: what was asked (``--torch-device``, or the deprecated ``--device``), else cuda when there is
    one."""
    import torch

    asked = args.torch_device
    if getattr(args, "legacy_device", None) is not None:
        print("nas: note: `nas supernet ... --device` is deprecated and will be removed in the next release; use "
              "--torch-device (--device names a latency device in every other command)", file=sys.stderr)
        asked = asked or getattr(args, "legacy_device", None)
    if asked == "cuda" and not torch.cuda.is_available():
        raise UsageError("--torch-device cuda: no CUDA GPU is visible here; use --torch-device cpu")
    return asked or ("cuda" if torch.cuda.is_available() else "cpu")


def train_supernet(args: argparse.Namespace) -> int:
    from nas.space import load_space
    from supernet.train import train_supernet as train

    space = load_space(args.space)
    device = _torch_device(args)
    cfg = TrainConfig(space=args.space, data=str(args.data), epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                      num_random=args.num_random, label_smoothing=args.label_smoothing,
                      max_train_images=args.max_train_images, val_images=args.val_images,
                      bn_images=args.bn_images, seed=args.seed, init_timm=args.init_timm, gumbel=args.gumbel,
                      tau_start=args.tau_start, tau_end=args.tau_end, alpha_lr=args.alpha_lr, opt=args.opt,
                      mixup=args.mixup, cutmix=args.cutmix, auto_augment=args.auto_augment, reprob=args.reprob,
                      ema_decay=args.ema_decay, amp=args.amp, accum_steps=args.accum_steps, sync_bn=args.sync_bn,
                      teacher=args.teacher, teacher_weights=args.teacher_weights, num_classes=args.num_classes,
                      kd=args.kd, sampling=args.sampling)
    if (args.ray_address or args.ray_storage or args.max_failures) and not args.num_workers:
        raise UsageError("--ray-address, --ray-storage and --max-failures are settings of --num-workers (Ray Train); "
                         "add --num-workers N or drop them")
    if not args.gumbel and any(getattr(args, k) != d for k, d in (("tau_start", TrainConfig.default("tau_start")),
                                                                   ("tau_end", TrainConfig.default("tau_end")),
                                                                   ("alpha_lr", TrainConfig.default("alpha_lr")))):
        raise UsageError("--tau-start, --tau-end and --alpha-lr are settings of --gumbel; add --gumbel or drop them")
    if args.num_workers:
        from pathlib import Path

        from supernet.distributed import train_on_ray

        result = train_on_ray(cfg, Path(args.out), args.num_workers, resume=args.resume, device=device,
                              save_every=args.save_every, progress=not args.no_progress, workers=args.workers,
                              address=args.ray_address, max_failures=args.max_failures, log_dir=args.log_dir,
                              storage=args.ray_storage)
    else:
        result = train(cfg, args.out, resume=args.resume, device=device, save_every=args.save_every,
                       progress=not args.no_progress, workers=args.workers, log_dir=args.log_dir)

    def text() -> None:
        top1 = ", ".join(f"{k} {v:.1f}%" for k, v in result["top1"].items())
        resumed = f" (resumed at step {result['resumed_from_step']})" if result["resumed_from_step"] else ""
        print(f"supernet of space {space.name!r} trained on {args.data}: {result['steps']} steps, {args.epochs} "
              f"epochs{resumed}; top-1 of the subnets at the ends of the space: {top1 or 'not evaluated'}")
        on = f" on {result['workers']} Ray workers" if args.num_workers else ""
        print(f"checkpoint {result['out']} ({result['wall_s']:.1f} s this run{on}; per-epoch metrics "
              f"{result['metrics']}); use it with "
              f"nas search --supernet {result['out']} --data {args.data}"
              + (f" --strategy slim (importance-guided); see its importances with nas supernet importance "
                 f"{result['out']}" if args.gumbel else ""))

    emit(args, result, text)
    return 0


def evaluate_supernet(args: argparse.Namespace) -> int:
    from nas.space import resolve_arch
    from supernet.checkpoint import load_checkpoint_payload
    from supernet.evaluate import evaluate_checkpoint

    space_name = load_checkpoint_payload(args.supernet)["space"]
    archs = {value: resolve_arch(value, space_name) for value in args.arch} if args.arch else None
    device = _torch_device(args)
    result = evaluate_checkpoint(args.supernet, args.data, archs, args.val_images, args.bn_images, device,
                                 progress=not args.no_progress)

    def text() -> None:
        print(f"top-1 of inherited weights of {args.supernet} (space {result['space']!r}) on {result['val']}, "
              f"BatchNorm recalibrated on {args.bn_images} training images:")
        for row in result["archs"]:
            a = row["arch"]
            print(f"  {row['name']:<24} {row['top1']:6.2f}%   widths {a['widths']}, depths {a['depths']}, "
                  f"n3d {a['n3d']}")

    emit(args, result, text)
    return 0


def show_importance(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nas.plots import plot_importance
    from supernet.checkpoint import load_importance

    importance = load_importance(args.supernet)
    plot = Path(args.plot) if args.plot else Path(args.supernet).with_suffix(".importance.png")
    plot_importance(importance, plot)
    result = {"supernet": str(args.supernet), **importance.to_dict(), "plot": str(plot)}

    def text() -> None:
        print(f"MetaPath importances of {args.supernet} (space {importance.space!r}); s = kept / identity, "
              "1 = indifferent:")
        for row in result["positions"]:
            probs = ", ".join(f"{k} {v:.2f}" for k, v in row["probabilities"].items())
            print(f"  stage {row['stage'] + 1} position {row['position'] + 1}: s = {row['importance']:7.3f}   "
                  f"({probs})")
        print("stage importances: " + ", ".join(f"{s + 1}: {v:.2f}" for s, v in enumerate(result["stages"])))
        print(f"plot {plot}")

    emit(args, result, text)
    return 0
