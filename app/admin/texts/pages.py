"""/admin/texts: every customer-facing text per language (filter by area, search), one text's editor with the
default beside the override, a live preview, save (validated: placeholders, Telegram HTML for the bot's texts)
and reset to default. The rules are in app/texts/service.py; edits are in force in every process at its next
request or job (app/texts/overrides.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.rendering import render, translate
from app.admin.texts.views import body_of, forms, preview
from app.deps import DbSession
from app.kit.field_errors import FieldInvalid
from app.kit.i18n import DEFAULT_LANGUAGE, available_languages
from app.texts import service

router = APIRouter(prefix="/texts")
PERMISSION = "texts:write"


@router.get("", response_class=HTMLResponse, dependencies=[require(PERMISSION)])
async def texts_page(request: Request, db: DbSession) -> HTMLResponse:
    params = request.query_params
    errors: dict[str, str] = {}
    language = params.get("language") or DEFAULT_LANGUAGE
    area = params.get("area") or None
    if language not in available_languages():
        errors["language"], language = f"Expected one of {', '.join(available_languages())}.", DEFAULT_LANGUAGE
    if area is not None and area not in set(service.areas().values()):
        errors["area"], area = "No such group of texts.", None
    search = (params.get("q") or "")[:100]
    texts = await service.listing(db, language, area=area, search=search)
    context = {
        "section": "texts",
        "texts": texts,
        "values": {"language": language, "area": area or "", "q": search},
        "errors": errors,
        "languages": available_languages(),
        "areas": sorted(set(service.areas().values())),
        "overridden": sum(1 for text in texts if text.override is not None),
    }
    return render(request, "admin/texts/list.html", context, status_code=422 if errors else 200)


async def _editor(
    request: Request,
    db: DbSession,
    language: str,
    key: str,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    text = await service.get(db, key, language)
    shown, problem = preview(text, body_of(text, typed) if typed is not None else text.current)
    context = {
        "section": "texts",
        "text": text,
        "forms": forms(text, typed),
        "preview": shown,
        "preview_error": problem,
        "errors": errors or {},
    }
    return render(request, "admin/texts/edit.html", context, toasts=toasts, status_code=status)


@router.get("/{language}/{key}", response_class=HTMLResponse, dependencies=[require(PERMISSION)])
async def text_page(request: Request, db: DbSession, language: str, key: str) -> HTMLResponse:
    return await _editor(request, db, language, key)


@router.post("/{language}/{key}", response_class=HTMLResponse)
async def save_text(
    request: Request, db: DbSession, language: str, key: str, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> Response:
    text = await service.get(db, key, language)
    typed = {name: str(value) for name, value in (await request.form()).items() if name != "csrf_token"}
    try:
        await service.save(db, viewer.actor, key, language, body_of(text, typed))
    except FieldInvalid as exc:
        return await _editor(request, db, language, key, typed=typed, errors={exc.field: exc.message}, status=422)
    return await _editor(request, db, language, key, toasts=[("success", translate(request, "admin_texts.saved"))])


@router.post("/{language}/{key}/reset", response_class=HTMLResponse)
async def reset_text(
    request: Request, db: DbSession, language: str, key: str, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> Response:
    await service.reset(db, viewer.actor, key, language)
    return await _editor(request, db, language, key, toasts=[("success", translate(request, "admin_texts.reset_done"))])


@router.post("/{language}/{key}/preview", response_class=HTMLResponse)
async def preview_text(
    request: Request, db: DbSession, language: str, key: str, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> HTMLResponse:
    """The preview block alone, as the editor types (nothing is saved)."""
    text = await service.get(db, key, language)
    typed = {name: str(value) for name, value in (await request.form()).items() if name != "csrf_token"}
    shown, problem = preview(text, body_of(text, typed))
    context = {"section": "texts", "text": text, "preview": shown, "preview_error": problem}
    return render(request, "admin/texts/edit.html", context, block="preview")
