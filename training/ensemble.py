"""``train-ensemble`` end to end: relabel loop, uncertainty ensemble, threshold, test, onset, bundle, report.

Steps (the paper's Methods; numbers in the report trace to this module):

1. relabel loop on months 1–10 (:mod:`training.relabel`) with five fold models per pass;
2. uncertainty ensemble: models 6–9 × seeds, trained on the cleaned labels of months 1–8;
   and the test ensemble (``EnsemblePreset.test_ensemble``): the paper's models 1–5 × seeds,
   retrained on the cleaned labels of months 1–10, or models 6–9 themselves;
3. threshold: precision–recall crossing of the models 6–9 median on the benchmark months 9–10
   (models 1–5 train on those months, so only models 6–9 can set it unseen, as in the paper);
4. test (months 11–12): the test ensemble's accuracy of the median, 25th and 75th percentiles
   against the synthetic truth and against the test labels after review of ensemble–crude
   disagreements, and the stable/unstable split; models 6–9 reported beside models 1–5;
5. onset: for correctly classified test emergences, each test member's masking curve (the
   first ``onset_hold`` frames held fixed) and its frame of maximum probability gradient; the
   ensemble median against the true onset;
6. the ONNX bundle of the test ensemble, ``report.json`` and the figures.

Every trained member is checkpointed under the run folder and reused when the
run is repeated, so an interrupted run resumes.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from common.ensemble import detects, is_stable, percentiles
from common.onset import ensemble_onset_frame
from common.video import scale_for_model
from ingest.dataset import DatasetStore
from training import figures
from training.data import store_clip
from training.evaluate import accuracy, onset_error_days, pr_crossing_threshold
from training.export import check_bundle, input_spec_for, write_bundle
from training.onset import masking_curves
from training.queue import PaperQueue, RankedQueue
from training.relabel import run_relabel_loop
from training.review import Reviewer
from training.splits import BENCHMARK_MONTHS, TEST_MONTHS, relabel_folds, uncertainty_folds
from training.train import TrainConfig, TrainedMember, load_member, predict, train_member


@dataclass(frozen=True)
class EnsemblePreset:
    """How hard ``train-ensemble`` works.

    Attributes
    ----------
    train : how each member trains.
    seeds : seeds per uncertainty fold (the paper: 2).
    max_passes : cap on relabel passes (the loop stops earlier when R ≤ 0.5).
    onset_stride : masking evaluated every this many frames (1 = every frame, the paper).
    onset_hold : frames held fixed when masking (the authors' code: 30, about two days): frames before it are
        replaced by it, and masking starts there (:func:`training.onset.masking_curves`).
    test_ensemble : the ensemble that is tested, estimates onsets and goes into the bundle: "relabel", the
        paper's models 1–5 × ``seeds`` retrained on the final labels (models 6–9 set the threshold and are
        reported beside them), or "uncertainty", models 6–9 × ``seeds`` themselves.
    relabel_threshold : probability above which a relabel model says "emergence".
    queue : which videos each relabel pass shows the reviewer (:mod:`training.queue`): the paper's
        (every new disagreement) or the ranked one (likeliest label errors first, until looks stop paying).
    relabel_select : which epoch a relabel model keeps (:attr:`TrainConfig.select`). A relabel model
        validates on the very block it audits, so "best" tunes the audit to agree with the labels it
        audits; "last" trains a fixed ``train.max_epochs``.
    labels : "relabel", the catalog's crude labels cleaned by the relabel loop (what a real archive allows), or
        "truth", the synthetic truth's classes (and, with ``train.onsets``, onsets): no loop, an upper bound only.
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[int, ...] = (0, 1)
    max_passes: int = 6
    onset_stride: int = 1
    onset_hold: int = 30
    test_ensemble: str = "relabel"
    relabel_threshold: float = 0.5
    queue: PaperQueue | RankedQueue = field(default_factory=PaperQueue)
    relabel_select: str = "best"
    labels: str = "relabel"


PRESETS = {
    # The authors' code, meant for a GPU: their 2-D frames-as-channels network, SGD (lr 1e-4, Nesterov
    # momentum 0.9), ×4 augmentation, the best of at most 20 epochs on plain validation accuracy with
    # patience 5; models 1–5 × 2 seeds tested and bundled; onset masking every frame, the first 30 held.
    "paper": EnsemblePreset(train=TrainConfig(architecture="2d", channels=(32, 64, 128, 256), fc=(512, 512),
                                              nesterov=True, monitor="accuracy", max_epochs=20, patience=5)),
    # CPU-sized (≤ 30 min on 2 cores for the small dataset): a higher learning rate, class-balanced
    # loss, augmentation cycled over epochs, a coarser first time stride, batch norm and a 2×2 input
    # pool (without them the members did not learn from crude labels in a CPU's epochs), half the
    # training items masked at a random frame (the service scores partial videos), at most three
    # passes, onset every 5th frame (the first convolution's time stride), no frames held; models 6–9
    # tested and bundled (as runs/small was trained).
    "small": EnsemblePreset(train=TrainConfig(lr=0.01, max_epochs=10, patience=5, augment="cycle", balance=True,
                                              time_stride=5, batch_norm=True, input_pool=True, truncate=0.5),
                            max_passes=3, onset_stride=5, onset_hold=0, test_ensemble="uncertainty"),
    # The service's question: the causal per-frame detector (training.model.EmergenceCausal) on dense targets from
    # the catalog's onsets, every model of the loop and the ensemble one of them; CPU-sized like "small" (Adam, one
    # seed, few epochs, one relabel pass unless --max-passes); models 6-9 tested and bundled.
    "causal": EnsemblePreset(train=TrainConfig(architecture="causal", optimizer="adam", lr=2e-3, max_epochs=3, patience=2,
                                               augment="cycle", balance=True),
                             seeds=(0,), max_passes=1, onset_stride=1, onset_hold=0, test_ensemble="uncertainty"),
}
# The causal preset trained on the synthetic truth's classes and onsets: an upper bound, never a default.
PRESETS["causal-truth"] = replace(PRESETS["causal"], labels="truth", train=replace(PRESETS["causal"].train, onsets="true_onset_frame"))


@dataclass(frozen=True)
class MemberJob:
    """One member to train (in this process or a worker): everything it needs, picklable."""

    store: str
    checkpoint: str
    train_idx: np.ndarray
    train_labels: np.ndarray
    val_idx: np.ndarray
    val_labels: np.ndarray
    seed: int
    config: TrainConfig
    device: str
    progress: bool


def _reusable(member: TrainedMember, job: MemberJob, fingerprint: str) -> bool:
    """Whether a checkpointed member is the one ``job`` asks for: same data, config, seed, rows and labels.

    A checkpoint from before members stored their labels is never reused: its labels are unknown.
    """
    return (member.dataset_fingerprint == fingerprint and member.config == job.config and member.seed == job.seed
            and np.array_equal(member.train_idx, job.train_idx) and np.array_equal(member.val_idx, job.val_idx)
            and member.train_labels is not None and np.array_equal(member.train_labels, job.train_labels)
            and member.val_labels is not None and np.array_equal(member.val_labels, job.val_labels))


def _train_job(job: MemberJob) -> str:
    """Train and checkpoint a member unless its checkpoint exists for the same data, config, seed, rows and labels."""
    path = Path(job.checkpoint)
    store = DatasetStore(job.store)
    if path.exists() and _reusable(load_member(path), job, store.fingerprint()):
        return str(path)
    train_member(store, job.train_idx, job.train_labels, job.val_idx, job.val_labels, job.seed, job.config,
                 job.device, progress=job.progress, checkpoint=path)
    return str(path)


def train_members(jobs: list[MemberJob], workers: int) -> list:
    """Train members, ``workers`` at a time (each job names its device); returns the loaded members in order."""
    if workers <= 1:
        paths = [_train_job(j) for j in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            paths = list(pool.map(_train_job, jobs))
    return [load_member(p) for p in paths]


def _member_job(store: DatasetStore, ids, months, checkpoint, fold, labels, seed, config, device, workers) -> MemberJob:
    """The job for one member of ``fold`` over the rows ``ids``/``months`` with ``labels`` (all (n,))."""
    tr, va = fold.indices(months)
    return MemberJob(str(store.path), str(checkpoint), ids[tr], labels[tr], ids[va], labels[va], seed, config, device,
                     progress=workers <= 1)


def relabel(store: DatasetStore, trainval, run_dir: str | Path, preset: EnsemblePreset, reviewer: Reviewer,
            devices: tuple[str, ...] | list[str] = ("cpu",), workers: int = 1, log=print):
    """Step 1, the relabel loop over the ``trainval`` catalog rows; checkpoints and passes under ``run_dir``.

    Returns :func:`training.relabel.run_relabel_loop`'s ``(labels, reviewed, records)``.
    """
    ids, months = trainval.video_id.to_numpy(), trainval.month.to_numpy()
    config = replace(preset.train, select=preset.relabel_select)

    def train_pass(labels, n):
        folds = relabel_folds()
        members = train_members([_member_job(store, ids, months, Path(run_dir) / f"pass_{n}" / f"model_{f.model}.pt",
                                             f, labels, f.model, config, devices[k % len(devices)], workers)
                                 for k, f in enumerate(folds)], workers)
        probs = np.full(len(labels), np.nan)
        for fold, member in zip(folds, members):
            _, va = fold.indices(months)
            probs[va] = predict(member, store, ids[va])
        return probs

    log(f"relabel loop on {len(trainval)} train+validation videos (reviewer: {reviewer.name}, {preset.queue.name} queue)")
    return run_relabel_loop(ids, months, trainval.crude_label.to_numpy(), train_pass, reviewer, store, run_dir,
                            preset.max_passes, preset.relabel_threshold, log, preset.queue, trainval.kind.to_numpy())


def onset_curves(store: DatasetStore, members: list[TrainedMember], video_ids, stride: int, hold: int,
                 cache_dir: Path, device: str = "cpu") -> tuple[np.ndarray, list[np.ndarray]]:
    """Every member's masking curve for each video of ``video_ids``, scaled with the store's clip.

    Masking runs after frames ``hold``, ``hold + stride``, … (the first ``hold`` frames held fixed,
    :func:`training.onset.masking_curves`). Returns those frames and per video the curves
    (n_members, len(frames)); each video's curves are cached in ``cache_dir`` (one folder per set of members).
    """
    frames = np.arange(hold, store.video_shape[0], stride)
    clip = store_clip(store)
    curves = []
    for video_id in np.asarray(video_ids, np.int64):
        cached = Path(cache_dir) / f"video_{int(video_id)}_stride_{stride}_hold_{hold}.npy"
        if not cached.exists():
            video = scale_for_model(store.video(int(video_id)), clip)
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, np.stack([masking_curves(m, video, device, frames=frames, hold=hold) for m in members]))
        curves.append(np.load(cached))
    return frames, curves


def run(store_path: str | Path, run_dir: str | Path, preset: EnsemblePreset, reviewer: Reviewer,
        devices: tuple[str, ...] | list[str] = ("cpu",), workers: int = 1, log=print) -> dict:
    """Run ``train-ensemble``; returns the report (also written to ``run_dir/report.json``)."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = DatasetStore(store_path)
    cat = store.catalog
    cadence_min = store.attrs["video"]["cadence_min"]
    trainval = cat[~cat.month.isin(TEST_MONTHS)].reset_index(drop=True)
    test = cat[cat.month.isin(TEST_MONTHS)].reset_index(drop=True)
    ids, months = trainval.video_id.to_numpy(), trainval.month.to_numpy()
    n_frames = store.video_shape[0]
    if not 0 <= preset.onset_hold <= n_frames - 2:
        raise ValueError(f"onset_hold {preset.onset_hold} leaves no masking curve in {n_frames}-frame videos")
    if preset.test_ensemble not in ("relabel", "uncertainty"):
        raise ValueError(f"test_ensemble is 'relabel' or 'uncertainty', got {preset.test_ensemble!r}")

    def job(checkpoint, fold, labels, seed, k) -> MemberJob:
        return _member_job(store, ids, months, checkpoint, fold, labels, seed, preset.train, devices[k % len(devices)],
                           workers)

    # 1. relabel loop ------------------------------------------------------------------------
    if preset.labels == "truth":
        log("labels: the synthetic truth (an upper bound; no relabel loop)")
        labels, reviewed, records = trainval.true_class.to_numpy(), np.zeros(len(trainval), bool), []
    else:
        labels, reviewed, records = relabel(store, trainval, run_dir / "relabel", preset, reviewer, devices, workers, log)

    # 2. uncertainty ensemble (models 6-9) and test ensemble ----------------------------------
    bench = np.isin(months, BENCHMARK_MONTHS)

    def ensemble(folder: str, folds) -> tuple[list[tuple[int, int]], list[TrainedMember], str]:
        """``folds`` × seeds trained on the final labels under ``run_dir/folder``: (model, seed) keys, members,
        and 12 hex digits of a hash of their checkpoints."""
        keys = [(fold, seed) for fold in folds for seed in preset.seeds]
        jobs = [job(run_dir / folder / f"model_{fold.model}_seed_{seed}.pt", fold, labels, seed, k)
                for k, (fold, seed) in enumerate(keys)]
        trained = train_members(jobs, workers)
        content = hashlib.sha256(b"".join(Path(j.checkpoint).read_bytes() for j in jobs)).hexdigest()[:12]
        return [(fold.model, seed) for fold, seed in keys], trained, content

    log(f"uncertainty ensemble: models 6-9 x seeds {list(preset.seeds)}")
    threshold_keys, threshold_members, threshold_key = ensemble("ensemble", uncertainty_folds())
    model_keys, members, members_key = threshold_keys, threshold_members, threshold_key
    if preset.test_ensemble == "relabel":
        log(f"test ensemble: models 1-5 x seeds {list(preset.seeds)} on the final labels")
        model_keys, members, members_key = ensemble("test_ensemble", relabel_folds())

    # 3. threshold on the benchmark months, from models 6-9 ---------------------------------
    bench_probs = np.stack([predict(m, store, ids[bench]) for m in threshold_members])
    _, bench_median, _ = percentiles(bench_probs)
    threshold, _, _, _ = pr_crossing_threshold(bench_median, labels[bench])
    log(f"threshold at the precision-recall crossing: {threshold:.2f} (paper: 0.6)")

    # 4. test --------------------------------------------------------------------------------
    test_ids = test.video_id.to_numpy()

    def test_percentiles(ensemble_members: list[TrainedMember]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        probs = np.stack([predict(m, store, test_ids) for m in ensemble_members])
        return probs, dict(zip(("p25", "median", "p75"), percentiles(probs)))

    def accuracies(stats: dict[str, np.ndarray], target: np.ndarray) -> dict[str, float | None]:
        """Accuracy of the median, 25th and 75th percentiles, and of the median on stable and unstable videos."""
        stable = is_stable(stats["p25"], stats["p75"], threshold)
        out: dict[str, float | None] = {k: accuracy(stats[k], target, threshold) for k in ("median", "p25", "p75")}
        out["stable"] = accuracy(stats["median"][stable], target[stable], threshold) if stable.any() else None
        out["unstable"] = accuracy(stats["median"][~stable], target[~stable], threshold) if (~stable).any() else None
        return out

    test_probs, stats = test_percentiles(members)
    truth = test.true_class.to_numpy()
    crude = test.crude_label.to_numpy()
    disagree = np.flatnonzero(detects(stats["median"], threshold).astype(int) != crude)
    test_labels = crude.copy()
    if len(disagree):
        test_labels[disagree] = reviewer.review(store, test_ids[disagree], crude[disagree], stats["median"][disagree])
    stable = is_stable(stats["p25"], stats["p75"], threshold)
    test_metrics: dict[str, object] = {
        "videos": int(len(test)),
        "reviewed": int(len(disagree)),
        "stable_fraction": float(stable.mean()),
    }
    for name, target in (("truth", truth), ("labels", test_labels)):
        test_metrics[f"accuracy_vs_{name}"] = accuracies(stats, target)
    # the paper's videos (centred on catalog regions) apart from the service's tiles
    test_metrics["median_accuracy_vs_truth_by_kind"] = {
        kind: accuracy(stats["median"][mask], truth[mask], threshold)
        for kind in sorted(set(test.kind)) if (mask := (test.kind == kind).to_numpy()).any()}
    beside = None  # models 6-9 on the test set, when models 1-5 are the test ensemble
    if preset.test_ensemble == "relabel":
        _, threshold_stats = test_percentiles(threshold_members)
        beside = {"stable_fraction": float(is_stable(threshold_stats["p25"], threshold_stats["p75"], threshold).mean()),
                  "accuracy_vs_truth": accuracies(threshold_stats, truth),
                  "accuracy_vs_labels": accuracies(threshold_stats, test_labels)}

    # 5. onset -------------------------------------------------------------------------------
    hits = np.flatnonzero(detects(stats["median"], threshold) & (truth == 1))
    hold, clip = preset.onset_hold, store_clip(store)
    log(f"onset: masking {len(hits)} correctly classified test emergences x {len(members)} members"
        + (f", the first {hold} frames held" if hold else ""))
    frames, curves = onset_curves(store, members, test_ids[hits], preset.onset_stride, hold,
                                  run_dir / "onset" / members_key, devices[0])
    estimates = [ensemble_onset_frame(c, frames) for c in curves]
    true_onsets = test.true_onset_frame.to_numpy()[hits]
    errors_days = (np.asarray(estimates) - true_onsets) * cadence_min / 1440.0
    onset = {"videos": int(len(hits)), "frames_evaluated_every": int(preset.onset_stride), "frames_held": int(hold),
             "error_days_percentiles": onset_error_days(np.asarray(estimates), true_onsets, cadence_min)}

    # 6. bundle + report + figures -----------------------------------------------------------
    def described(keys: list[tuple[int, int]], trained: list[TrainedMember]) -> list[dict]:
        return [{"model": m, "seed": s, "val_accuracy": float(mem.val_accuracy), "best_epoch": int(mem.best_epoch)}
                for (m, s), mem in zip(keys, trained)]

    report = {
        "dataset": {"path": str(store.path), "fingerprint": store.fingerprint(), "videos": len(cat),
                    "trainval": int(len(trainval)), "test": int(len(test))},
        "preset": json.loads(json.dumps(asdict(preset))),
        "relabel": {
            "passes": [asdict(r) | {"changed": len(r.changed)} for r in records],
            "queue": preset.queue.name,
            "reviewed_fraction": float(reviewed.mean()),
            "reviewer_looks": int(sum(r.looks for r in records)),
            "crude_accuracy_vs_truth": float((trainval.crude_label.to_numpy() == trainval.true_class.to_numpy()).mean()),
            "final_label_accuracy_vs_truth": float((labels == trainval.true_class.to_numpy()).mean()),
        },
        "ensemble": {"test_ensemble": "models 1-5" if preset.test_ensemble == "relabel" else "models 6-9",
                     "members": described(model_keys, members),
                     "threshold_members": described(threshold_keys, threshold_members)},
        "threshold": {"value": threshold, "benchmark_months": list(BENCHMARK_MONTHS), "benchmark_videos": int(bench.sum()),
                      "paper": 0.6},
        "test": test_metrics,
        **({"test_models_6_9": beside} if beside else {}),
        "onset": onset,
        "paper": {"test_accuracy": {"median": 0.83, "p25": 0.79, "p75": 0.71}, "reviewed_fraction": 0.5,
                  "onset_error_days": {"p5": -2.1, "p25": 0.1, "p50": 0.4, "p75": 1.1, "p95": 2.7}},
    }
    bundle = write_bundle(run_dir / "bundle", [(m, f"model{k}", s, {"val_accuracy": float(m.val_accuracy)})
                                              for (k, s), m in zip(model_keys, members)],
                          threshold, report["dataset"]["fingerprint"], {"test": test_metrics, "onset": onset},
                          input_spec_for(store), onset_hold=hold)
    sample = np.stack([scale_for_model(store.video(int(i)), clip) for i in test_ids[:4]])
    report["bundle"] = {"path": str(bundle), "onnx_vs_torch_max_abs": check_bundle(bundle, sample, members)}
    fig_dir = run_dir / "figures"
    report["figures"] = [str(p) for p in (
        figures.relabel_passes(records, len(trainval), fig_dir / "relabel_passes.png"),
        figures.ensemble_histogram(test_probs, threshold, fig_dir / "test_ensemble.png", "Test set: ensemble outputs"),
        figures.masking_curves(curves[:4], frames, true_onsets[:4], estimates[:4], fig_dir / "masking_curves.png"),
        figures.onset_errors(errors_days, fig_dir / "onset_errors.png"),
    )]
    report["wall_time_s"] = time.perf_counter() - t_start
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    return report
