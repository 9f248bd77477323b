"""/admin/faq: categories and entries per language (order, on/off), an entry's editor with a preview as the
help page shows it, and removal. Errors are shown next to their field and change nothing; the rules are in
app/help/staff_actions.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.faq import queries
from app.admin.faq.schemas import CategoryIn, ItemIn, category_form, item_form
from app.admin.forms import parse_form
from app.admin.rendering import redirect, render, translate
from app.deps import DbSession
from app.help import staff_actions as faq
from app.help.staff_actions import item_state
from app.inbound import RowId
from app.kit.field_errors import FieldInvalid
from app.kit.i18n import DEFAULT_LANGUAGE, available_languages

router = APIRouter(prefix="/faq")
PERMISSION = "texts:write"


async def _form(request: Request) -> dict[str, str]:
    return {k: str(v) for k, v in (await request.form()).items() if k != "csrf_token"}


async def _list_page(
    request: Request,
    db: DbSession,
    language: str,
    *,
    item: dict[str, Any] | None = None,
    category: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    context = {
        "section": "faq",
        "language": language,
        "languages": available_languages(),
        "groups": await queries.groups(db, language),
        "item": item or {"language": language, "is_active": "1"},
        "category": category or {},
        "errors": errors or {},
    }
    return render(request, "admin/faq/list.html", context, toasts=toasts, status_code=status)


@router.get("", response_class=HTMLResponse, dependencies=[require(PERMISSION)])
async def faq_page(request: Request, db: DbSession) -> HTMLResponse:
    language = request.query_params.get("language") or DEFAULT_LANGUAGE
    if language not in available_languages():
        return await _list_page(request, db, DEFAULT_LANGUAGE, errors={"language": "No such language."}, status=422)
    return await _list_page(request, db, language)


@router.post("/categories", response_class=HTMLResponse)
async def create_category(
    request: Request, db: DbSession, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> Response:
    data = await _form(request)
    language = data.pop("view_language", DEFAULT_LANGUAGE)
    language = language if language in available_languages() else DEFAULT_LANGUAGE
    parsed, errors = parse_form(CategoryIn, category_form(data))
    if parsed is not None:
        try:
            await faq.create_category(db, viewer.actor, **parsed.model_dump())
        except FieldInvalid as exc:
            errors = {exc.field: exc.message}
    if errors:
        return await _list_page(request, db, language, category=data, errors=errors, status=422)
    toast = translate(request, "admin_faq.category_created")
    return await _list_page(request, db, language, toasts=[("success", toast)])


@router.post("/items", response_class=HTMLResponse)
async def create_item(request: Request, db: DbSession, viewer: Annotated[StaffViewer, require(PERMISSION)]) -> Response:
    data = await _form(request)
    language = data.get("language") if data.get("language") in available_languages() else DEFAULT_LANGUAGE
    parsed, errors = parse_form(ItemIn, item_form(data))
    if parsed is not None:
        try:
            await faq.create_item(db, viewer.actor, parsed.model_dump())
        except FieldInvalid as exc:
            errors = {exc.field: exc.message}
    if errors:
        return await _list_page(request, db, str(language), item=data, errors=errors, status=422)
    return await _list_page(
        request, db, str(language), toasts=[("success", translate(request, "admin_faq.item_created"))]
    )


async def _item_page(
    request: Request,
    db: DbSession,
    item_id: int,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    item = await faq.get_item(db, item_id)
    shown = values if values is not None else {k: v for k, v in item_state(item).items()}
    context = {
        "section": "faq",
        "item": item,
        "values": shown,
        "categories": await queries.categories(db),
        "languages": available_languages(),
        "errors": errors or {},
    }
    return render(request, "admin/faq/item.html", context, toasts=toasts, status_code=status)


@router.get("/items/{item_id}", response_class=HTMLResponse, dependencies=[require(PERMISSION)])
async def item_page(request: Request, db: DbSession, item_id: RowId) -> HTMLResponse:
    return await _item_page(request, db, item_id)


@router.post("/items/{item_id}", response_class=HTMLResponse)
async def update_item(
    request: Request, db: DbSession, item_id: RowId, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> Response:
    item = await faq.get_item(db, item_id)
    data = await _form(request)
    parsed, errors = parse_form(ItemIn, item_form(data))
    if parsed is not None:
        try:
            await faq.update_item(db, viewer.actor, item, parsed.model_dump())
        except FieldInvalid as exc:
            errors = {exc.field: exc.message}
    if errors:
        shown = item_form(data)
        return await _item_page(request, db, item_id, values=shown, errors=errors, status=422)
    return await _item_page(request, db, item_id, toasts=[("success", translate(request, "admin_faq.saved"))])


@router.post("/items/{item_id}/delete", response_model=None)
async def delete_item(
    request: Request, db: DbSession, item_id: RowId, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> Response:
    item = await faq.get_item(db, item_id)
    language = item.language
    await faq.delete_item(db, viewer.actor, item)
    return redirect(request, f"/admin/faq?language={language}")


@router.post("/categories/{category_id}", response_class=HTMLResponse)
async def update_category(
    request: Request, db: DbSession, category_id: RowId, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> Response:
    category = await faq.get_category(db, category_id)
    data = await _form(request)
    language = data.pop("view_language", DEFAULT_LANGUAGE)
    language = language if language in available_languages() else DEFAULT_LANGUAGE
    parsed, errors = parse_form(CategoryIn, category_form(data))
    if parsed is not None:
        try:
            await faq.update_category(db, viewer.actor, category, **parsed.model_dump())
        except FieldInvalid as exc:
            errors = {exc.field: exc.message}
    if errors:
        errors = {f"category-{category_id}.{name}": message for name, message in errors.items()}
        return await _list_page(request, db, language, errors=errors, status=422)
    return await _list_page(request, db, language, toasts=[("success", translate(request, "admin_faq.saved"))])


@router.post("/categories/{category_id}/delete", response_class=HTMLResponse)
async def delete_category(
    request: Request, db: DbSession, category_id: RowId, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> Response:
    category = await faq.get_category(db, category_id)
    language = (await _form(request)).get("view_language", DEFAULT_LANGUAGE)
    language = language if language in available_languages() else DEFAULT_LANGUAGE
    try:
        await faq.delete_category(db, viewer.actor, category)
    except FieldInvalid as exc:
        return await _list_page(request, db, language, errors={f"category-{category_id}": exc.message}, status=422)
    return await _list_page(request, db, language, toasts=[("success", translate(request, "admin_faq.deleted"))])
