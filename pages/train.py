"""Training page (leads): start a training job (run by the worker process), watch its progress,
speed, time left, the labels it trains on and its loss, cancel it or a prediction job, and pick
which model version drives predictions and suggestions."""

from __future__ import annotations

import time

import streamlit as st

from pages import _jobs as jobs
from pages import _session as session
from pages._feedback import show_error
from pages._text import fmt_time
from storage.errors import StudioError
from storage.records import Job, Project, User
from storage.service import Studio


@st.cache_resource(show_spinner=False)
def _gpu_name() -> str | None:
    """torch is imported lazily: only this page needs it, and the import costs a second."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _start_form(studio: Studio, user: User, project: Project) -> None:
    defaults = jobs.preset()
    with st.form("start_training"):
        if defaults.minutes > 0:
            minutes = st.number_input(
                "Training time (minutes)",
                min_value=0.5,
                max_value=24 * 60.0,
                value=float(defaults.minutes),
                step=1.0,
                key="train_minutes",
                help="The steps follow from the machine's measured speed: a GPU does more in the same time.",
            )
            budget = {"minutes": float(minutes)}
        else:
            iterations = st.number_input(
                "Iterations",
                min_value=1,
                max_value=100_000,
                value=defaults.iterations,
                step=50,
                key="train_iters",
            )
            budget = {"iterations": int(iterations)}
        started = st.form_submit_button("Start training", type="primary")
    if not started:
        return
    params = {**defaults.params, **budget}
    try:
        job = studio.enqueue_training(
            user, project.id, iterations=int(params.pop("iterations", defaults.iterations)), params=params
        )
    except StudioError as exc:
        show_error(exc)
        return
    if not session.worker_disabled():
        studio.ensure_worker()
    what = f"{budget['minutes']:g} minutes" if "minutes" in budget else f"{job.total} iterations"
    st.success(f"Training job {job.id} queued ({what}).")


def _prediction_status(studio: Studio, user: User, all_jobs: list[Job]) -> None:
    """After training the worker predicts every image and ranks suggestions, image by image: say
    so while it runs, and let a lead stop it (images done keep their predictions)."""
    job = jobs.watched_job(all_jobs, kind="predict")
    if job is None or job.status not in jobs.ACTIVE:
        return
    done = f" ({job.iteration} of {job.total} images)" if job.total else ""
    st.caption(
        f"Updating predictions and suggestions: {job.status}{done}. Each image's prediction and "
        "the suggestions appear as soon as it is done."
    )
    if job.cancel_requested:
        st.caption("Cancel requested; predictions stop after the current part of the image.")
    elif st.button("Cancel predictions", key=f"cancel_predict_{job.id}"):
        try:
            studio.cancel_job(user, job.id)
        except StudioError as exc:
            show_error(exc)


def _running_details(studio: Studio, user: User, job: Job) -> None:
    """Speed, time left and which labels the job trains on."""
    if jobs.checking(job):
        st.caption(
            f"Trained {job.iteration} steps; now saving the model and scoring it against the current "
            "one on the held-back labels (it becomes current only if it is not worse)."
        )
    elif job.status == "running":
        rate, left = jobs.speed(job), jobs.seconds_left(job, time.time())
        parts = [f"speed {rate:.2f} steps/s" if rate else "measuring speed"]
        if left is not None:
            parts.append(f"about {jobs.fmt_duration(left)} left at this speed")
        st.caption(" · ".join(parts).capitalize())
    if job.status in jobs.ACTIVE:
        try:
            counts = studio.job_labels(user, job.id)
        except StudioError:
            return
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(counts["up_to"]))
        st.caption(jobs.labels_sentence(counts, job.status == "running", when))


def _progress_panel(studio: Studio, user: User, project: Project) -> None:
    all_jobs = studio.list_jobs(user, project.id)
    _prediction_status(studio, user, all_jobs)
    job = jobs.watched_job(all_jobs)
    if job is None:
        st.caption("No training job yet.")
        return
    st.markdown(f"**Job {job.id}**: {job.status}, {jobs.step_sentence(job)}")
    st.progress(min(max(float(job.progress), 0.0), 1.0))
    _running_details(studio, user, job)
    if job.error:
        st.error("The job failed:")
        st.code(job.error, language=None)
    if job.loss_history:
        rows = jobs.loss_rows(job.loss_history)
        if "total" in rows:
            st.line_chart(
                {"step": rows["iteration"], "training loss": rows["total"]},
                x="step",
                y_label="training loss (lower is better)",
                height=240,
            )
        with st.expander("Loss terms"):
            terms = {
                jobs.in_words(k, jobs.LOSS_WORDS): v
                for k, v in rows.items()
                if k not in ("total", "iteration")
            }
            st.line_chart({"step": rows["iteration"], **terms}, x="step", height=240)
    if job.status in jobs.ACTIVE:
        if job.cancel_requested:
            st.caption("Cancel requested; the worker stops at the next iteration.")
        elif st.button("Cancel training", key=f"cancel_{job.id}"):
            try:
                studio.cancel_job(user, job.id)
            except StudioError as exc:
                show_error(exc)
    # A job that just ended produced a model version: refresh the whole page to list it (also while
    # its prediction job runs), and stop polling once nothing is queued or running.
    active = any(j.status in jobs.ACTIVE for j in all_jobs)
    ended = tuple(j.id for j in all_jobs if j.kind == "train" and j.status not in jobs.ACTIVE)
    seen = st.session_state.get("_train_ended")
    st.session_state["_train_ended"] = ended
    if (st.session_state.get("_train_polling") and not active) or (seen is not None and seen != ended):
        st.session_state.pop("_train_polling", None)
        st.rerun(scope="app")
    if active:
        st.session_state["_train_polling"] = True


def _versions(studio: Studio, user: User, project: Project) -> None:
    versions = studio.list_model_versions(user, project.id)
    if not versions:
        training = jobs.watched_job(studio.list_jobs(user, project.id))
        if training is not None and training.status in jobs.ACTIVE:
            st.caption("No model yet: the first one is training (progress above).")
        else:
            st.caption("No model yet: label a few objects and start training.")
        return
    rows = []
    for v in sorted(versions, key=lambda v: v.version, reverse=True):
        row = {
            "version": v.version,
            "current": "✓" if v.is_current else "",
            "created": fmt_time(v.created_at),
            "labelled objects": v.n_objects,
            "images": v.n_images,
        }
        metrics = dict(v.metrics or {})
        metrics["held_back"] = jobs.held_back_text(metrics)
        row.update({jobs.in_words(k): round(x, 4) if isinstance(x, float) else x for k, x in metrics.items()})
        rows.append(row)
    st.dataframe(rows, hide_index=True, width="stretch")
    newest = max(versions, key=lambda v: v.version)
    if not newest.is_current and (newest.metrics or {}).get("kept_back"):
        st.warning(
            f"Version {newest.version} was not made current: {newest.metrics['kept_back']}. "
            "Choose it below to use it anyway."
        )
    by_id = {v.id: v for v in versions}
    current = next((v.id for v in versions if v.is_current), None)
    choice = st.selectbox(
        "Model used for predictions and suggestions",
        list(by_id),
        index=list(by_id).index(current) if current in by_id else 0,
        format_func=lambda vid: (
            f"v{by_id[vid].version} ({fmt_time(by_id[vid].created_at)})"
            + (" · current" if vid == current else "")
        ),
        key=f"train_version_pick_{current}",  # a new current version resets the choice
    )
    if choice != current and st.button("Use this version", key="train_use_version"):
        try:
            studio.set_current_model(user, project.id, choice)
            st.rerun()
        except StudioError as exc:
            show_error(exc)
    if current is not None and st.button(
        "Re-run predictions",
        key="train_rerun_predictions",
        help="Predict every image and rank the suggestions again with the current model",
    ):
        try:
            job = studio.enqueue_prediction(user, project.id)
            if not session.worker_disabled():
                studio.ensure_worker()
            st.success(f"Prediction job {job.id} queued.")
        except StudioError as exc:
            show_error(exc)


studio, user, project = session.require_project(role="lead")
st.title("Training")
gpu = _gpu_name()
st.caption(f"Device: GPU ({gpu})" if gpu else "Device: CPU (no GPU available; training is slower)")
_start_form(studio, user, project)

st.subheader("Progress")
active = any(j.status in jobs.ACTIVE for j in studio.list_jobs(user, project.id))
st.fragment(run_every=2 if active else None)(_progress_panel)(studio, user, project)

st.subheader("Model versions")
_versions(studio, user, project)
