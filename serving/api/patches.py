"""The patches on the disk: their latest scores and status, a passage's score history, video and cutout."""
from __future__ import annotations

import io

import numpy as np
from astropy.time import Time
from fastapi import APIRouter, HTTPException, Query, Response

from common.clock import slot_isot, slot_of_time
from common.figures import sprite
from contract.events import PatchDetail, PatchSummary
from serving.api.deps import ReaderDep, ServiceDep
from serving.api.problems import problems
from serving.region import cutout_png
from serving.service import Service
from serving.store import Reader

router = APIRouter()


@router.get("/patches")
def patches(reader: ReaderDep) -> list[PatchSummary]:
    """Every patch on the disk now, with its latest score and alert status."""
    return reader.patches()


@router.get("/patches/{patch_id}", responses=problems(404, 422))
def patch(patch_id: str, reader: ReaderDep) -> PatchDetail:
    """One patch: probability history (masking curve so far) and onset estimate of its latest passage."""
    found = reader.patch(patch_id)
    if found is None:
        raise HTTPException(404, f"no passage recorded for patch {patch_id!r}")
    return found


def stored_video(service: Service, reader: Reader, patch_id: str,
                 passage_start: str | None) -> tuple[tuple[int, str, int], np.ndarray]:
    """(the passage: start slot, status, last scored frame; its video) of a patch's passage from ``passage_start``
    (ISO UTC; its latest passage when None): 422 for a time that is not one, 404 when there is none, 410 when the
    retention policy removed it."""
    try:
        start = int(slot_of_time(Time(passage_start))) if passage_start is not None else None
    except ValueError:
        raise HTTPException(422, f"passage_start={passage_start!r} is not an ISO time") from None
    found = reader.passage(patch_id, start)
    video = service.store.read_video(patch_id, found[0]) if found else None
    if found is not None and video is None and found[1] == "closed" and found[2] >= 0:
        raise HTTPException(410, f"the video of patch {patch_id!r} from {slot_isot(found[0])} was removed by the "
                                 f"retention policy: closed passages' videos are kept {service.config.retain_videos} "
                                 "after their last frame (retain_videos); the alerts and scores stand")
    if found is None or video is None:
        raise HTTPException(404, f"no video recorded for patch {patch_id!r}"
                                 + (f" from {passage_start}" if passage_start is not None else ""))
    return found, video


@router.get("/patches/{patch_id}/video", response_class=Response,
            responses={200: {"content": {"application/x-npy": {}},
                             "description": "NumPy .npy of float32 (n_frames, pixels, pixels), LoS field in G"},
                       **problems(404, 410, 422)})
def patch_video(patch_id: str, service: ServiceDep, reader: ReaderDep, passage_start: str | None = Query(
        None, description="ISO UTC time of the passage's frame 0 (an alert's passage_start); the latest passage when absent")
                ) -> Response:
    """A patch passage's rolling video as a NumPy ``.npy`` file: float32 (n_frames, pixels, pixels), G, frames
    not yet observed 0 G (the dataset's padding). Headers: ``X-Passage-Start`` (ISO), ``X-Last-Frame`` (the
    newest frame scored, -1 before the first), ``X-Passage-Status`` (open or closed)."""
    found, video = stored_video(service, reader, patch_id, passage_start or None)
    body = io.BytesIO()
    np.save(body, video, allow_pickle=False)
    return Response(body.getvalue(), media_type="application/x-npy",
                    headers={"X-Passage-Start": slot_isot(found[0]), "X-Last-Frame": str(found[2]),
                             "X-Passage-Status": found[1]})


@router.get("/patches/{patch_id}/frames.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "grey PNG sheet of the passage's frames 0 to "
                                                                         "the last scored, row by row, north up, ±300 G"},
                       **problems(404, 410, 422)})
def patch_frames(patch_id: str, service: ServiceDep, reader: ReaderDep, passage_start: str | None = Query(
        None, description="ISO UTC time of the passage's frame 0; the latest passage when absent")) -> Response:
    """A patch passage's frames so far as one sheet (``ceil(√n)`` columns of ``pixels``² frames, frame 0 top left;
    frames not observed are 0 G): what the patch page scrubs through."""
    found, video = stored_video(service, reader, patch_id, passage_start or None)
    sheet = sprite(video[: max(found[2], 0) + 1])
    return Response(sheet.png, media_type="image/png", headers={"X-Columns": str(sheet.columns)})


@router.get("/patches/{patch_id}/cutout.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "grey PNG, black -300 G to white +300 G, "
                                                                         "north up: the onset frame left, the frame right"},
                       **problems(404, 410, 422)})
def patch_cutout(patch_id: str, service: ServiceDep, reader: ReaderDep,
                 passage_start: str = Query(description="ISO UTC time of the passage's frame 0 (an alert's passage_start)"),
                 frame: int = Query(ge=0, description="the frame to show (an alert's frame)"),
                 onset: int = Query(ge=0, description="the onset frame to show beside it (an alert's onset.frame)")) -> Response:
    """The cutout an alert's ``region.cutout`` links to: a small PNG of the patch at its onset and at the alert's
    frame, side by side (the patch's pixels, 1/6° each)."""
    found, video = stored_video(service, reader, patch_id, passage_start)
    if max(frame, onset) > found[2]:
        raise HTTPException(404, f"patch {patch_id!r} from {passage_start} is scored up to frame {found[2]}; "
                                 f"frame {max(frame, onset)} is not observed yet")
    return Response(cutout_png(video, frame, onset), media_type="image/png")
