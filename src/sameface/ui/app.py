"""The gradio app: widgets over a `Workspace`, no logic of its own.

Every handler takes the browser's session token (a hidden textbox the page fills from the
browser's storage; API clients pass their own) and turns the workspace's errors into a
readable line in the page, never a traceback. Work that uses the model shares one concurrency
group, so requests wait their turn instead of exhausting memory.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..errors import SamefaceError

CACHE_HOURS = 6
"""How long gradio's copies of uploads and served images stay in the data dir's cache."""
MODEL_QUEUE = "model"
"""The concurrency group of everything that runs the base model."""

_MESSAGE_ERRORS = (SamefaceError, ValueError, OSError, KeyError)


def build_app(workspace: Any) -> Any:
    """The sameface UI over `workspace` (a `gradio.Blocks`; launch it with `serve`)."""
    import gradio as gr

    from ..methods import get_method
    from .api import add_api
    from .files import gradio_cache, served_copy
    from .forms import form_fields

    backend = workspace.backend
    status = backend.methods()

    def _fail(e: Exception | str) -> str:
        """An error as one bold line (`Workspace.readable`)."""
        return f"**⚠ {workspace.readable(e)}**"

    runnable = [m for m, why in status.items() if why is None]
    first = "textual-inversion" if "textual-inversion" in runnable else next(iter(runnable), None)
    # One model request at a time: pipelines install words and adapters on the shared base.
    model = {"concurrency_id": MODEL_QUEUE, "concurrency_limit": 1}

    def personalised(token, who, current=None):
        """The methods a person is personalised with, as a dropdown update."""
        people = {p["name"]: p for p in workspace.people(token)} if token else {}
        done = people.get(who, {}).get("methods", [])
        keep = current if current in done else (done[0] if done else None)
        return gr.update(choices=done, value=keep)

    def person_choices(session: str, n: int) -> list:
        """`n` person-dropdown updates (separate objects: gradio consumes each)."""
        names = [p["name"] for p in workspace.people(session)] if session else []
        return [gr.update(choices=names, value=names[-1] if names else None) for _ in range(n)]

    # gradio's file cache (uploads, served copies) is swept: files older than 6 h, hourly.
    with gr.Blocks(
        title="sameface", analytics_enabled=False, delete_cache=(3600, CACHE_HOURS * 3600)
    ) as app:
        gr.Markdown(
            f"# sameface\nPersonalise a text-to-image model with a person's photos. "
            f"Running on {backend.label}."
        )
        # The key to the browser's stored session survives restarts (kept in the data dir).
        browser = gr.BrowserState(
            None, storage_key="sameface-session", secret=workspace.browser_secret()
        )
        session = gr.Textbox(visible="hidden", elem_id="session")  # in the page, not shown

        # -- photos -> identity ---------------------------------------------------------------
        with gr.Tab("Photos", id="photos"):
            photos = gr.File(
                file_count="multiple",
                file_types=["image"],
                type="filepath",
                label=f"Photos of one person (up to {workspace.limits.max_photos})",
                elem_id="photos",
            )
            with gr.Row():
                name = gr.Textbox(label="Name", placeholder="e.g. ada", elem_id="person-name")
                choices = gr.Textbox(
                    label="Face per photo",
                    info="In a group photo, the number of the face to use (shown in its box), "
                    "one per photo, comma-separated; empty = the largest face",
                    elem_id="face-choices",
                )
            with gr.Row():
                check = gr.Button("Check photos", elem_id="check-photos")
                save = gr.Button("Save identity", variant="primary", elem_id="save-identity")
            boxed = gr.Gallery(label="Faces found", columns=4, height="auto", elem_id="faces")
            photo_report = gr.Markdown(elem_id="photo-report")

        # -- personalise ----------------------------------------------------------------------
        with gr.Tab("Personalise", id="personalise"):
            with gr.Row():
                person = gr.Dropdown(label="Person", choices=[], elem_id="person")
                method = gr.Dropdown(
                    label="Method",
                    choices=runnable,
                    value=first,
                    elem_id="method",
                )
                adapter = gr.Dropdown(label="Trained weights", choices=[], elem_id="adapter")
            unavailable = {m: why for m, why in status.items() if why}
            if unavailable:
                gr.Markdown(
                    "Not available here: "
                    + "; ".join(f"**{m}** ({why})" for m, why in unavailable.items())
                )
            groups, fields, widgets = {}, {}, []
            for m in runnable:
                spec = get_method(m)
                with gr.Group(visible=m == first) as groups[m]:
                    gr.Markdown(f"**{m}** — {spec.kind}; {spec.paper}")
                    gr.Markdown(backend.licenses(m), elem_classes=["licenses"])
                    with gr.Accordion("Settings", open=False):
                        fields[m] = []
                        for f in form_fields(spec.config_cls, backend.defaults(m)):
                            widgets.append(_widget(gr, f, m))
                            fields[m].append(f.name)
            with gr.Row():
                run = gr.Button("Personalise", variant="primary", elem_id="personalise")
                stop = gr.Button("Cancel", elem_id="cancel")
            run_status = gr.Markdown(elem_id="personalise-status")
            # Cancel answers in its own line: written into run_status, a late reply could
            # overwrite the run's closing message (seen once: "Stopping…" left after the end).
            cancel_status = gr.Markdown(elem_id="cancel-status")

        # -- generate -------------------------------------------------------------------------
        with gr.Tab("Generate", id="generate") as generate_tab:
            with gr.Row():
                g_person = gr.Dropdown(label="Person", choices=[], elem_id="g-person")
                g_method = gr.Dropdown(label="Method", choices=[], elem_id="g-method")
            prompts = gr.Textbox(
                label="Prompts (one a line; name the person <id>)",
                value="a photo of <id>",
                lines=3,
                elem_id="prompts",
            )
            negative = gr.Textbox(label="Negative prompt", elem_id="negative")
            with gr.Row():
                seeds = gr.Textbox(label="Seeds", value="0", info="e.g. 0, 1, 2", elem_id="seeds")
                steps = gr.Number(label="Steps", value=30, precision=0, elem_id="steps")
                guidance = gr.Number(label="Guidance", value=7.5, elem_id="guidance")
            options, option_names = [], []
            with gr.Row():
                for m in runnable:
                    for arg, fld in get_method(m).generate_options.items():
                        if arg in option_names:
                            continue
                        # Empty by default: the artifact's own value (what it was made with).
                        default = getattr(get_method(m).config_cls(), fld, None)
                        options.append(
                            gr.Number(
                                label=arg.replace("_", " "),
                                value=None,
                                info=f"empty = the artifact's own (the method's default: {default})",
                                visible=False,
                            )
                        )
                        option_names.append(arg)
            without = gr.Checkbox(
                label='Also without the person (the base model, "a person", same seed)',
                elem_id="without",
            )
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            gallery = gr.Gallery(
                label="Images", columns=4, height="auto", buttons=["download"], elem_id="gallery"
            )
            made = gr.JSON(label="Settings of each image", elem_id="made")
            gen_status = gr.Markdown(elem_id="generate-status")

        # -- identities -----------------------------------------------------------------------
        with gr.Tab("Identities", id="identities") as identities_tab:
            table = gr.Dataframe(
                headers=["name", "photos", "methods", "images"],
                interactive=False,
                elem_id="people",
            )
            with gr.Row():
                i_person = gr.Dropdown(label="Person", choices=[], elem_id="i-person")
                i_method = gr.Dropdown(label="Artifact", choices=[], elem_id="i-method")
            webui = gr.Radio(
                ["sameface artifact", "A1111 / ComfyUI files"],
                value="sameface artifact",
                label="Download as",
                info="A1111 / ComfyUI: the learned words (and LoRA) named after the person, for "
                "their embeddings (and loras) folders; textual inversion, DreamIdentity, "
                "MagiCapture",
                elem_id="export-kind",
            )
            with gr.Row():
                export = gr.Button("Download artifact", elem_id="export")
                confirm = gr.Checkbox(
                    label="Yes, delete everything of this person", elem_id="confirm"
                )
                delete = gr.Button("Delete person", variant="stop", elem_id="delete")
            download = gr.File(label="Artifact", elem_id="download")
            i_status = gr.Markdown(elem_id="identities-status")

        # -- reports --------------------------------------------------------------------------
        with gr.Tab("Reports", id="reports"):
            reports = workspace.reports()
            report = gr.Dropdown(
                label="Bench report",
                choices=[str(p) for p in reports],
                value=str(reports[0]) if reports else None,
                elem_id="report",
            )
            frame = gr.HTML(elem_id="report-frame")
            if not reports:
                gr.Markdown(
                    "No reports: start the UI with `--reports DIR` (a folder of `sameface bench` "
                    "or `sameface demo` runs)."
                )

        # -- handlers -------------------------------------------------------------------------

        def start(token):
            token = token if isinstance(token, str) and len(token) == 32 else secrets.token_hex(16)
            return token, token, *person_choices(token, 3)

        app.load(
            start,
            inputs=browser,
            outputs=[browser, session, person, g_person, i_person],
            api_visibility="private",
        )

        def check_photos(token, files, face_text):
            try:
                copies = workspace.take_uploads(token, files or [], move=False)
            except _MESSAGE_ERRORS as e:  # refused uploads are gone: clear the list
                return None, [], _fail(e)
            try:
                found, outliers, shown = workspace.preview(
                    token, copies, _choices(face_text, len(copies))
                )
                gallery_ = [(served_copy(p), r.name) for p, r in zip(shown, found, strict=True)]
                return gr.update(), gallery_, _photo_lines(found, outliers)
            except _MESSAGE_ERRORS as e:
                return gr.update(), [], _fail(e)
            finally:
                for p in copies:
                    p.unlink(missing_ok=True)

        faces_queue = {"concurrency_id": "faces", "concurrency_limit": 1}  # one analyser
        for event in (check.click, photos.upload):
            event(
                check_photos,
                inputs=[session, photos, choices],
                outputs=[photos, boxed, photo_report],
                api_visibility="private",
                **faces_queue,
            )
        photos.clear(lambda: ([], ""), outputs=[boxed, photo_report], api_visibility="private")

        def save_identity(token, files, who, face_text, shown):
            try:
                workspace.new_person(token, who)  # a bad name costs no upload
                moved = workspace.take_uploads(token, files or [])
            except _MESSAGE_ERRORS as e:
                return gr.update(), _fail(e), *_keep(3)
            try:
                identity = workspace.create_identity(
                    token, who, moved, _choices(face_text, len(moved))
                )
            except _MESSAGE_ERRORS as e:  # the uploads went with the attempt
                return None, _fail(e), *_keep(3)
            lines = [shown or "", f"Saved **{who}**: {identity.num_photos} photo(s)."]
            if identity.outliers:
                lines.append(
                    "Photos that look like someone else: "
                    + ", ".join(str(i) for i in identity.outliers)
                )
            return None, "\n\n".join(lines), *person_choices(token, 3)

        save.click(
            save_identity,
            inputs=[session, photos, name, choices, photo_report],
            outputs=[photos, photo_report, person, g_person, i_person],
            api_visibility="private",
            **faces_queue,
        )

        def pick_method(m):
            shown = [gr.update(visible=k == m) for k in groups]
            choices_ = backend.adapters(m) if m else []
            picker = gr.update(
                choices=choices_, value=choices_[0] if choices_ else None, visible=bool(choices_)
            )
            return [*shown, picker]

        for event in (method.change, app.load):
            event(
                pick_method,
                inputs=method,
                outputs=[*groups.values(), adapter],
                api_visibility="private",
            )

        def personalise(token, who, m, weights, *values, progress=gr.Progress()):  # noqa: B008
            if not who:
                return _fail("choose a person (save one in Photos first)"), *_keep(2)
            if m not in fields:
                return _fail(f"{m!r} cannot run here"), *_keep(2)
            start_at = sum(len(fields[k]) for k in list(fields)[: list(fields).index(m)])
            raw = dict(zip(fields[m], values[start_at : start_at + len(fields[m])], strict=True))

            def step(i, total, loss):
                progress((i, total), desc=f"step {i}/{total} · loss {loss:.4f}", unit="steps")

            try:
                workspace.personalize(
                    token,
                    who,
                    m,
                    raw,
                    adapter=weights or None,
                    on_step=step,
                )
            except _MESSAGE_ERRORS as e:
                return _fail(e), gr.update(), gr.update()
            note = f"**{who}** is personalised with {m}: generate in the Generate tab."
            return note, gr.update(value=who), personalised(token, who, m)

        run.click(
            personalise,
            inputs=[session, person, method, adapter, *widgets],
            outputs=[run_status, g_person, g_method],
            api_visibility="private",
            **model,
        )

        def stop_training(token):
            if not workspace.cancel(token):
                return "Nothing is running."
            return "Stopping after this step; the checkpoint is kept, so Personalise resumes."

        stop.click(
            stop_training,
            inputs=session,
            outputs=cancel_status,
            queue=False,
            api_visibility="private",
        )
        run.click(lambda: "", outputs=cancel_status, queue=False, api_visibility="private")

        for who, what in ((g_person, g_method), (i_person, i_method)):
            who.change(
                personalised, inputs=[session, who, what], outputs=what, api_visibility="private"
            )
        # Opening a tab shows what other tabs (or another browser tab) made since.
        generate_tab.select(
            personalised,
            inputs=[session, g_person, g_method],
            outputs=g_method,
            api_visibility="private",
        )
        identities_tab.select(
            lambda token, who, what: (listing(token), personalised(token, who, what)),
            inputs=[session, i_person, i_method],
            outputs=[table, i_method],
            api_visibility="private",
        )

        def show_options(m):
            mine = get_method(m).generate_options if m else {}
            return [gr.update(visible=n in mine) for n in option_names]

        g_method.change(show_options, inputs=g_method, outputs=options, api_visibility="private")

        def make_images(token, who, m, text, neg, seed_text, n_steps, scale, with_base, *opts):
            try:
                if not who or not m:
                    raise ValueError("choose a person and a method they are personalised with")
                mine = get_method(m).generate_options
                chosen = {n: v for n, v in zip(option_names, opts, strict=True) if n in mine}
                images = workspace.generate(
                    token,
                    who,
                    m,
                    text.splitlines(),
                    seeds=_seeds(seed_text),
                    negative_prompt=neg,
                    num_inference_steps=int(n_steps) if n_steps else None,
                    guidance_scale=float(scale) if scale is not None else None,
                    options=chosen,
                    without_person=bool(with_base),
                )
            except _MESSAGE_ERRORS as e:
                return gr.update(), gr.update(), _fail(e)
            shown = [(served_copy(g.path), g.caption) for g in images]
            return shown, [g.settings for g in images], f"{len(images)} image(s)."

        generate.click(
            make_images,
            inputs=[
                session,
                g_person,
                g_method,
                prompts,
                negative,
                seeds,
                steps,
                guidance,
                without,
                *options,
            ],
            outputs=[gallery, made, gen_status],
            api_visibility="private",
            **model,
        )

        def listing(token):
            rows = workspace.people(token) if token else []
            return [[r["name"], r["photos"], ", ".join(r["methods"]), r["images"]] for r in rows]

        session.change(listing, inputs=session, outputs=table, api_visibility="private")

        def export_artifact(token, who, m, kind):
            try:
                if not who or not m:
                    raise ValueError("choose a person and one of their artifacts")
                webui_files = kind != "sameface artifact"
                path = workspace.export(token, who, m, webui=webui_files)
                what = f"{m}, A1111 / ComfyUI files" if webui_files else m
                return served_copy(path), f"Artifact of {who} ({what})."
            except _MESSAGE_ERRORS as e:
                return None, _fail(e)

        export.click(
            export_artifact,
            inputs=[session, i_person, i_method, webui],
            outputs=[download, i_status],
            api_visibility="private",
            **model,  # not while an artifact is written or deleted
        )

        def delete_everything(token, who, sure):
            try:
                if not who:
                    raise ValueError("choose a person")
                if not sure:
                    raise ValueError("tick the box to confirm: deletion cannot be undone")
                removed = workspace.delete_person(token, who, also=[gradio_cache()])
            except _MESSAGE_ERRORS as e:
                return _fail(e), *_keep(5)
            note = f"Deleted **{who}**: {len(removed)} file(s) removed."
            return note, listing(token), False, *person_choices(token, 3)

        delete.click(
            delete_everything,
            inputs=[session, i_person, confirm],
            outputs=[i_status, table, confirm, i_person, person, g_person],
            api_visibility="private",
            **model,
        )
        for button in (save, run, generate):
            button.click(listing, inputs=session, outputs=table, api_visibility="private")

        def open_report(path):
            if not path:
                return ""
            from urllib.parse import quote

            return (
                f'<iframe src="/gradio_api/file={quote(path)}" title="bench report" '
                'style="width:100%;height:80vh;border:1px solid #ccc"></iframe>'
            )

        for event in (report.change, app.load):
            event(open_report, inputs=report, outputs=frame, api_visibility="private")
        add_api(workspace, model)
    return app


def _keep(n: int) -> list:
    """`n` "leave as it is" outputs."""
    import gradio as gr

    return [gr.update() for _ in range(n)]


def _widget(gr: Any, f: Any, method: str) -> Any:
    """A gradio input for one `FormField`."""
    common = {"label": f.label, "info": f.info or None, "elem_id": f"{method}-{f.name}"}
    if f.widget == "checkbox":
        return gr.Checkbox(value=bool(f.value), **common)
    if f.widget in ("int", "float"):
        return gr.Number(value=f.value, precision=0 if f.widget == "int" else None, **common)
    return gr.Textbox(value=f.value, lines=3 if f.widget == "lines" else 1, **common)


def _choices(text: str | None, count: int) -> list[int | None]:
    """Per-photo face numbers from "0, , 2" (empty = the policy's face)."""
    parts = [t.strip() for t in (text or "").split(",")]
    if not any(parts):
        return [None] * count
    if len(parts) > count:
        raise ValueError(f"{len(parts)} face numbers for {count} photo(s)")
    out: list[int | None] = []
    for t in parts + [""] * (count - len(parts)):
        if not t:
            out.append(None)
        elif t.isdigit():
            out.append(int(t))
        else:
            raise ValueError(f"face numbers are whole numbers from 0, got {t!r}")
    return out


def _seeds(text: str | None) -> list[int]:
    try:
        return [int(t) for t in (text or "").replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"seeds are whole numbers, e.g. 0, 1, 2 (got {text!r})") from None


def _photo_lines(found: list, outliers: list[int]) -> str:
    lines = []
    for i, r in enumerate(found):
        if r.error:
            lines.append(f"- photo {i} ({r.name}): **⚠ {r.error}**")
            continue
        line = f"- photo {i} ({r.name}): {r.faces} face(s), using face {r.chosen}"
        if r.warnings:
            line += " — " + "; ".join(r.warnings)
        if i in outliers:
            line += " — **looks like someone else than the other photos**"
        lines.append(line)
    return "\n".join(lines)
