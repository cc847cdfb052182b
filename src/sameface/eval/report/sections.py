"""The report's content: images and one line per method first, then the summary, paired
gains, per-prompt and per-identity blocks, and the protocol last."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..metrics import CLIP_T_MIN_SEPARATION, MIN_NORM_RANGE
from ..stats import Summary, paired_gain, summarise
from .document import _N, _Bullets, _Code, _Heading, _Image, _Para, _Table
from .format import (
    _DASH,
    _MEMORY_COLUMN,
    _SUMMARY_COLUMNS,
    _SUMMARY_GROUPS,
    _finite,
    _fmt_interval,
    _fmt_model,
    _fmt_scalar,
    _label,
    _model_name,
    _row_classes,
)
from .run import BASELINE, BASELINE_LABELS, RunData

# ---- report content -----------------------------------------------------------------


def _method_settings(protocol: Mapping) -> dict[str, dict]:
    """Per-method settings from the protocol's `method_defaults`, `methods` and
    `method_settings` maps, merged in the order the runner applies them."""
    settings: dict[str, dict] = {}
    sources = ("method_defaults", "methods", "method_settings")
    for source in (protocol.get(k) for k in sources):
        if isinstance(source, Mapping):
            for m, conf in source.items():
                if isinstance(conf, Mapping) and conf:
                    settings.setdefault(str(m), {}).update(conf)
    return settings


def _protocol_setting_rows(protocol: Mapping) -> list[list]:
    """Rows for the suite's protocol settings: the known ones labelled, other scalars by
    key, then one row of settings per method."""
    rows: list[list] = []
    # (key, label, shown when the value is None). Suite lists (identities, prompts) are
    # shown from the records; per-method settings get a row each.
    known = (
        ("resolution", "resolution (px)", "the base model's default"),
        ("num_inference_steps", "sampling steps", _DASH),
        ("steps", "sampling steps", _DASH),
        ("guidance_scale", "guidance scale", "the pipeline's default"),
        ("guidance", "guidance scale", "the pipeline's default"),
        ("seeds", "seeds", _DASH),
        ("negative_prompt", "negative prompt", "none"),
        ("placeholder", "placeholder", _DASH),
        ("training_seeds", "training seeds", "one training run (the config's seed)"),
    )
    hidden = {
        "name",
        "identities",
        "prompts",
        "description",
        "methods",
        "method_settings",
        "method_defaults",
        "run",
    }
    for key, label, if_none in known:
        if key in protocol:
            value = protocol[key]
            rows.append([label, if_none if value is None else _fmt_scalar(value)])
    for key, value in protocol.items():
        if key in hidden or any(key == k for k, _, _ in known):
            continue
        if isinstance(value, (str, int, float, bool)) or value is None:
            rows.append([key.replace("_", " "), _fmt_scalar(value)])
    from ..variants import method_of

    for m, conf in _method_settings(protocol).items():
        on_top = f" (on top of {method_of(m)}'s)" if method_of(m) != m else ""
        rows.append([f"settings: {m}{on_top}", _fmt_scalar(conf)])
    return rows


def _recogniser_blocks(run: RunData, recognizer: Any) -> list:
    """Which face recogniser each method is conditioned on, next to the evaluator's,
    flagging a method graded by the recogniser it was coached by."""
    eval_name = _model_name(recognizer)
    cond = run.meta.get("conditioning_recognizers")
    cond = cond if isinstance(cond, Mapping) else {}
    crow: list[list] = []
    for m in run.methods:
        if m in BASELINE_LABELS:
            used = f"— ({BASELINE_LABELS[m]}: no identity input)"
        elif m not in cond:
            used = "not recorded"
        elif cond[m] is None:
            used = "— (conditioned on no face recogniser)"
        else:
            used = _fmt_model(cond[m])
        warn = ""
        cname = _model_name(cond.get(m)) if m not in BASELINE_LABELS else None
        if cname and eval_name and cname.lower() == eval_name.lower():
            warn = "⚠ same recogniser conditions and evaluates: face similarity likely inflated"
        crow.append([m, used, _fmt_model(recognizer), warn])
    return [
        _Heading(3, "Face recognisers per method"),
        _Para(
            [
                "A method conditioned on (or trained against) the evaluator's own recogniser "
                "is graded by the judge it was coached by; compare such numbers with care."
            ]
        ),
        _Table(
            ["method", "conditioned on", "evaluated with", "note"],
            crow,
            row_classes=_row_classes(run.methods),
            numeric_from=99,
        ),
    ]


def _protocol_blocks(run: RunData) -> list:
    meta = run.meta
    evaluator = meta.get("evaluator") if isinstance(meta.get("evaluator"), Mapping) else {}
    recognizer = evaluator.get("recognizer")
    rows: list[list] = []
    suite = meta.get("suite")
    suite_cell: list = [str(suite) if suite else _DASH]
    if meta.get("suite_file"):
        suite_cell += [" (", _Code(str(meta["suite_file"])), ")"]
    rows.append(["suite", suite_cell])
    rows.append(["base model", _Code(str(meta["base"])) if meta.get("base") else _DASH])
    rows.append(["face-similarity evaluator (recogniser)", _fmt_model(recognizer)])
    rows.append(["CLIP evaluator (CLIP-T, CLIP-I, face CLIP-I)", _fmt_model(evaluator.get("clip"))])
    protocol = meta.get("protocol") if isinstance(meta.get("protocol"), Mapping) else {}
    rows += _protocol_setting_rows(protocol)
    rows.append(["identities", f"{len(run.identities)}: {', '.join(run.identities)}"])
    rows.append(["prompts", str(len(run.prompts))])
    rows.append(["images", str(len(run.images))])
    if meta.get("created"):
        rows.append(["created", str(meta["created"])])
    if meta.get("sameface_version"):
        rows.append(["sameface version", str(meta["sameface_version"])])
    blocks: list = [_Heading(2, "Protocol")]
    description = meta.get("description") or protocol.get("description")
    if isinstance(description, str) and description.strip():
        blocks.append(_Para([description.strip()]))
    blocks.append(_Table(["setting", "value"], rows, numeric_from=99))
    blocks += _recogniser_blocks(run, recognizer)
    return blocks


def _summary_blocks(run: RunData, summaries: Mapping[str, Mapping[str, Summary]]) -> list:
    has_context = any(summaries[m]["context_accuracy"].n for m in run.methods)
    columns = {key: (label, kind) for key, label, kind in (*_SUMMARY_COLUMNS, _MEMORY_COLUMN)}
    if not has_context:
        columns.pop("context_accuracy")
    if not any(summaries[m]["personalize_peak_mem_mb"].n for m in run.methods):
        columns.pop("personalize_peak_mem_mb")
    if not _clip_t_shown(summaries):
        for key in _CLIP_T_KEYS:
            columns.pop(key)
    blocks: list = [
        _Heading(2, "Summary"),
        _Para(
            [
                "Means with 95% intervals: ± is the half-width of the Student-t interval over "
                "images; detection rate shows its Wilson interval [low, high]; n counts the "
                "values behind each number. Images are pooled over identities, prompts and "
                "seeds and treated as independent, so the intervals are on the optimistic side."
            ]
        ),
        *_clip_t_note(summaries),
    ]
    for title, keys in _SUMMARY_GROUPS:
        keys = [k for k in keys if k in columns]
        rows = []
        for m in run.methods:
            row = [_label(m)]
            for key in keys:
                v = _fmt_interval(summaries[m][key], columns[key][1])
                if v == _DASH and key in ("id_norm", "text_norm") and _recorded(run, m, key):
                    v = _NOT_MEANINGFUL  # recorded for its images, but every range degenerate
                row.append(v if v in (_DASH, _NOT_MEANINGFUL) else [v, _N(summaries[m][key].n)])
            rows.append(row)
        header = ["method", *[columns[k][0] for k in keys]]
        blocks += [
            _Heading(3, title),
            _Table(header, rows, row_classes=_row_classes(run.methods)),
        ]
    blocks.append(
        _Bullets(
            [
                [
                    "face sim (detected only) averages over images where a face was found; "
                    "face sim (misses = 0) counts a missed face as 0. Rank methods by the "
                    "latter: a method that breaks faces otherwise looks better than it is."
                ],
                [
                    "CLIP-T: CLIP similarity of the image to the prompt with the person "
                    "written as 'a person' (editability). CLIP-I: CLIP similarity to the "
                    "baseline's image for the same prompt and seed (how little the identity "
                    "disturbs the base model). Face CLIP-I: the generated face crop against "
                    "the reference face crops."
                ],
                [
                    "id_norm: face similarity rescaled so that 0 is the baseline's and 1 the "
                    "reference photos' self-similarity; text_norm: CLIP-T rescaled so that 0 "
                    "is the reference photos' and 1 the baseline's (FeedFace). A prompt whose "
                    f"range is narrower than {MIN_NORM_RANGE:g} (or inverted) gives no "
                    "normalised score: dividing by it would blow noise up into huge intervals; "
                    f"'{_NOT_MEANINGFUL}' marks a row where no prompt had a usable range. "
                    "Aggregate = (1 + CLIP-T)(1 + face sim, misses = 0) (textual-inversion "
                    "paper, eq. 4)."
                ],
                [
                    "The ",
                    _Code(BASELINE),
                    " row is the base model given the prompt without "
                    "the identity: the floor every other number is read against.",
                ],
                *_extra_bullets(run, has_context),
            ]
        )
    )
    return blocks + _seed_spread_blocks(run, summaries)


_NOT_MEANINGFUL = "not meaningful"


_CLIP_T_KEYS = ("clip_t", "text_norm", "aggregate")


def _recorded(run: RunData, method: str, key: str) -> bool:
    """Whether the method's records carry `key` at all (older runs may not)."""
    return any(key in r for r in run.images if r["method"] == method)


def clip_t_separation(summaries: Mapping[str, Mapping[str, Summary]]) -> float | None:
    """CLIP-T of the no-identity images minus a copied reference photo's; None when the run
    has not both rows (then nothing says the instrument fails, and CLIP-T is shown)."""
    if BASELINE not in summaries or "copy-reference" not in summaries:
        return None
    none, copy = summaries[BASELINE]["clip_t"], summaries["copy-reference"]["clip_t"]
    if not (none.n and copy.n):
        return None
    return none.mean - copy.mean


def _clip_t_shown(summaries: Mapping[str, Mapping[str, Summary]]) -> bool:
    margin = clip_t_separation(summaries)
    return margin is None or margin >= CLIP_T_MIN_SEPARATION


def _clip_t_note(summaries: Mapping[str, Mapping[str, Summary]]) -> list:
    """A paragraph saying why CLIP-T is left out (nothing when it is shown)."""
    if _clip_t_shown(summaries):
        return []
    margin = clip_t_separation(summaries)
    return [
        _Para(
            [
                f"CLIP-T, text_norm and the aggregate are left out: in this run the "
                f"no-identity images score only {margin:+.3f} CLIP-T above a copied reference "
                f"photo (the bar is {CLIP_T_MIN_SEPARATION:g}), so this CLIP cannot tell an "
                "image that follows the prompt from a copy of the photo."
            ]
        )
    ]


_SPREAD_METRICS = (
    ("face_similarity_with_misses", "face sim (misses = 0)"),
    ("context_accuracy", "context acc."),
    ("clip_t", "CLIP-T"),
    ("aggregate", "aggregate"),
)


def _seed_spread_blocks(run: RunData, summaries: Mapping[str, Mapping[str, Summary]]) -> list:
    """For rows trained with several seeds: the spread of the per-seed means beside the
    interval over images (the paper trains every setting three times)."""
    from ..variants import training_seed_spread

    metrics = [
        (k, t)
        for k, t in _SPREAD_METRICS
        if any(summaries[m][k].n for m in run.methods)
        and (k not in _CLIP_T_KEYS or _clip_t_shown(summaries))
    ]
    rows = []
    for m in run.methods:
        spreads = [training_seed_spread(run.images, m, k) for k, _ in metrics]
        n_seeds = max((len(s.means) for s in spreads), default=0)
        if n_seeds < 2:
            continue
        row: list = [m, str(n_seeds)]
        for (key, _), spread in zip(metrics, spreads, strict=True):
            if len(spread.means) < 2:
                row.append(_DASH)
                continue
            ci = summaries[m][key].half_width
            ci_text = f"; ± {ci:.3f} over images" if _finite(ci) else ""
            row.append(f"sd {spread.sd:.3f} (range {spread.range:.3f}{ci_text})")
        rows.append(row)
    if not rows:
        return []
    return [
        _Heading(3, "Between training seeds"),
        _Para(
            [
                "Each row below was personalised once per training seed and its images pooled "
                "above. Here: the standard deviation and range of the per-seed means, beside "
                "the half-width of the 95% interval over images. A spread as large as the "
                "interval means the training run, not the images, decides the number."
            ]
        ),
        _Table(["method", "training seeds", *[t for _, t in metrics]], rows, numeric_from=1),
    ]


def _glance_blocks(
    run: RunData, summaries: Mapping[str, Mapping[str, Summary]], grids: Mapping[str, str]
) -> list:
    """What a person looks for first: one identity's images, then one line per method."""
    blocks: list = []
    if run.identities:
        first = run.identities[0]
        more = len(run.identities) - 1
        blocks += [
            _Heading(2, "Images"),
            _Para(
                [
                    f"{first}: the reference face crops, then each method's image for every "
                    "prompt (first seed), captioned with face similarity (ID) and CLIP-T (T)."
                    + (f" The other {more} identities' grids are at the end." if more else "")
                ]
            ),
            _Image(grids[first], f"grid {first}"),
        ]
    others = [m for m in run.methods if m not in (BASELINE, "known-by-name")]
    if BASELINE not in run.methods or not others:
        return blocks
    has_context = any(summaries[m]["context_accuracy"].n for m in run.methods)
    if not has_context and not _clip_t_shown(summaries):
        return [*blocks, *_clip_t_note(summaries)]  # no instrument for the prompt's side
    prompt_key, prompt_label = (
        ("context_accuracy", "context kept (context acc.)")
        if has_context
        else ("clip_t", "prompt kept (CLIP-T)")
    )
    header = [
        "method",
        "more like the person (Δ face sim)",
        "identities that rose",
        prompt_label,
        "Δ vs no identity",
        "personalise s",
    ]
    rows = []
    for m in others:
        gain = paired_gain(run.images, m, "face_similarity_with_misses", baseline=BASELINE)
        kept = paired_gain(run.images, m, prompt_key, baseline=BASELINE)
        rows.append(
            [
                _label(m),
                _fmt_interval(gain, "score"),
                _rose(run, m),
                _fmt_interval(summaries[m][prompt_key], "score"),
                _fmt_interval(kept, "score"),
                _fmt_interval(summaries[m]["personalize_time_s"], "time"),
            ]
        )
    base = _fmt_interval(summaries[BASELINE][prompt_key], "score")
    blocks += [
        _Heading(2, "At a glance"),
        _Para(
            [
                "One line per method, each image paired with the no-identity image of the same "
                "identity, prompt and seed (95% intervals). Face similarity: how much more like "
                "the person than the floor; ",
                prompt_label.split(" (")[0],
                f": the no-identity images score {base}.",
            ]
        ),
        _Table(header, rows, row_classes=_row_classes(others)),
    ]
    return blocks


def _rose(run: RunData, method: str) -> str:
    """ "k of n": identities whose mean face similarity rose over the baseline's."""
    per_identity = [
        paired_gain(run.images, method, "face_similarity_with_misses", identity=i)
        for i in run.identities
    ]
    scored = [g for g in per_identity if g.n]
    return f"{sum(g.mean > 0 for g in scored)} of {len(scored)}" if scored else _DASH


_GAIN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("face_similarity_with_misses", "Δ face sim (misses = 0)"),
    ("clip_t", "Δ CLIP-T"),
    ("context_accuracy", "Δ context acc."),
)


def _gain_blocks(run: RunData, summaries: Mapping[str, Mapping[str, Summary]]) -> list:
    """Each method minus the no-identity baseline, paired by identity, prompt and seed.

    `known-by-name` is left out: its face similarity is against another person's photos.
    """
    others = [m for m in run.methods if m not in (BASELINE, "known-by-name")]
    if BASELINE not in run.methods or not others:
        return []
    columns = [
        (k, label)
        for k, label in _GAIN_COLUMNS
        if any(_finite(r.get(k)) for r in run.images if r["method"] == BASELINE)
        and (k not in _CLIP_T_KEYS or _clip_t_shown(summaries))
    ]
    header = ["method", *[label for _, label in columns], "identities with higher face sim"]
    rows = []
    for m in others:
        row: list = [_label(m)]
        for key, _ in columns:
            g = paired_gain(run.images, m, key, baseline=BASELINE)
            v = _fmt_interval(g, "score")
            row.append(v if v == _DASH else [v, _N(g.n)])
        row.append(_rose(run, m))
        rows.append(row)
    return [
        _Heading(2, "Gain over the no-identity baseline"),
        _Para(
            [
                "Each method's image minus the ",
                _Code(BASELINE),
                " image for the same identity, prompt and seed, averaged with a 95% Student-t "
                "interval over those pairs. An interval that excludes 0 is a measurable gain "
                "(or loss); pairs within one identity are correlated, so also read the last "
                "column: in how many identities the mean face similarity rose.",
            ]
        ),
        _Table(header, rows, row_classes=_row_classes(others)),
    ]


def _extra_bullets(run: RunData, has_context: bool) -> list:
    """Notes on the optional baselines and the context accuracy, when the run has them."""
    out: list = []
    if "known-by-name" in run.methods:
        out.append(
            [
                _Code("known-by-name"),
                ": the base model given the name of a person it was trained on (identity i "
                "paired with known person i) instead of the placeholder; its face similarity "
                "is against that person's reference photos: what the model does for someone "
                "it knows.",
            ]
        )
    if "copy-reference" in run.methods:
        out.append(
            [
                _Code("copy-reference"),
                ": a reference photo (number seed mod photos) as the image, scored like the "
                "others: the fidelity ceiling and the editability floor.",
            ]
        )
    if has_context:
        out.append(
            [
                "context acc.: the fraction of the attributes the prompt asks for (background, "
                "pattern, style, framing, accessories) that the context classifier reads off "
                "the image; prompts that ask for none are left out."
            ]
        )
    return out


def _per_prompt_blocks(run: RunData) -> list:
    blocks: list = [_Heading(2, "Per prompt")]
    metrics = [
        ("face_similarity_with_misses", "Face similarity (misses = 0)"),
        ("clip_t", "CLIP-T"),
    ]
    if any(_finite(r.get("context_accuracy")) for r in run.images):
        metrics.append(("context_accuracy", "Context accuracy"))
    for key, title in metrics:
        rows = []
        for idx, prompt in run.prompts:
            row: list = [str(idx), _Code(prompt)]
            for m in run.methods:
                s = summarise(run.images, m, prompt_index=idx)[key]
                v = _fmt_interval(s, "score")
                row.append(v if v == _DASH else [v, _N(s.n)])
            rows.append(row)
        blocks += [_Heading(3, title), _Table(["#", "prompt", *run.methods], rows, numeric_from=2)]
    return blocks


def _identity_blocks(run: RunData, grids: Mapping[str, str]) -> list:
    rows = []
    for ident in run.identities:
        ref = run.references.get(ident)
        n_ref = len(ref.get("images") or []) if ref else 0
        self_sim = ref.get("self_similarity") if ref else None
        row: list = [
            ident,
            str(n_ref) if ref else "no record",
            f"{self_sim:.3f}" if _finite(self_sim) else _DASH,
        ]
        for m in run.methods:
            s = summarise(run.images, m, identity=ident)["face_similarity_with_misses"]
            row.append(_fmt_interval(s, "score"))
        rows.append(row)
    blocks: list = [
        _Heading(2, "Per identity"),
        _Para(
            [
                "Face similarity (misses = 0) per identity. Reference self-similarity is the "
                "mean similarity between an identity's own reference photos: the ceiling, as "
                "the ",
                _Code(BASELINE),
                " column is the floor.",
            ]
        ),
        _Table(
            ["identity", "reference crops", "reference self-similarity", *run.methods],
            rows,
            numeric_from=1,
        ),
    ]
    if len(run.identities) > 1:
        blocks += [
            _Heading(2, "Image grids"),
            _Para(
                [
                    "As at the top, for the other identities: rows are methods; the first "
                    "column the reference face crops, then the first seed's image for each "
                    "prompt, captioned with its face similarity (ID) and CLIP-T (T)."
                ]
            ),
        ]
    for ident in run.identities[1:]:
        blocks += [_Heading(3, ident), _Image(grids[ident], f"grid {ident}")]
    return blocks
