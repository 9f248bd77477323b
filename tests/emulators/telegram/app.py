"""The ASGI app: the Bot API at /bot<token>/<method>, plus control endpoints under /_emu/tg/ for tests and the
benchmark (which may run the emulator in another process)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from tests.emulators.payments_common import Delivery
from tests.emulators.telegram.payments import DEFAULT_USER_ID

if TYPE_CHECKING:
    from tests.emulators.telegram.emulator import TelegramBotApiEmulator


BOT_PATH = re.compile(r"/bot(?P<token>[^/]+)/(?P<method>[^/]+)")


class EmulatorApp:
    """Bot API calls go straight to the emulator (a broadcast makes a thousand a second, and FastAPI's routing
    would cost as much as the call itself); everything else to the FastAPI app of control endpoints."""

    def __init__(self, emu: TelegramBotApiEmulator, control: FastAPI) -> None:
        self.emu = emu
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = BOT_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.control(scope, receive, send)
            return
        response = await self.emu.call(match["token"], match["method"], Request(scope, receive))
        await response(scope, receive, send)


def detail(message: str, status: int) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


async def control_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    data = json.loads(body) if body.strip() else {}
    return data if isinstance(data, dict) else {}


def build_app(emu: TelegramBotApiEmulator) -> EmulatorApp:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    # --- payments ------------------------------------------------------------------------------------------

    async def pay(request: Request) -> JSONResponse:
        data = await control_body(request)
        ref = data.get("invoice_link") or data.get("invoice_slug") or data.get("payload")
        if not ref:
            return detail("give invoice_link, invoice_slug or payload", 422)
        if not emu.webhook_url:
            return detail("set webhook_url first (PUT /_emu/tg/webhook)", 409)
        try:
            emu.invoice(ref)
        except KeyError as exc:
            return detail(str(exc), 404)
        amount = data.get("amount")
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
            return detail("amount must be a whole number of Stars", 422)
        result = await emu.pay_via_webhook(
            ref, user_id=int(data.get("user_id") or DEFAULT_USER_ID), amount=amount, currency=data.get("currency")
        )
        return JSONResponse(result)

    async def renew(request: Request) -> JSONResponse:
        charge_id = request.path_params["charge_id"]
        if (await control_body(request)).get("lapse"):
            return JSONResponse({"status": "lapsed"})  # Telegram sends nothing when a renewal fails
        try:
            delivery = emu.renew(charge_id)
        except KeyError as exc:
            return detail(str(exc), 404)
        except RuntimeError as exc:
            return detail(str(exc), 409)
        return JSONResponse(await posted(delivery))

    async def refund(request: Request) -> JSONResponse:
        try:
            delivery = emu.refund_delivery(request.path_params["charge_id"])
        except KeyError as exc:
            return detail(str(exc), 404)
        return JSONResponse(await posted(delivery))

    async def posted(delivery: Delivery) -> dict[str, Any]:
        result: dict[str, Any] = {"update": json.loads(delivery.body)}
        if emu.webhook_url:
            result["webhook_status"] = (await emu.deliver(delivery)).status_code
        return result

    async def set_balance(request: Request) -> JSONResponse:
        try:
            emu.balance = str((await control_body(request)).get("stars", "0"))
        except (ValueError, ArithmeticError) as exc:
            return detail(f"stars: {exc}", 422)
        return JSONResponse({"balance": str(emu.balance)})

    # --- users and recipients ------------------------------------------------------------------------------

    async def user_message(request: Request) -> JSONResponse:
        data = await control_body(request)
        text = data.get("text")
        if not isinstance(text, str) or not text:
            return detail("give the message text", 422)
        update = emu.user_message(
            int(request.path_params["user_id"]),
            text,
            language_code=str(data.get("language_code") or "en"),
            first_name=str(data.get("first_name") or "Test"),
            username=str(data["username"]) if data.get("username") else None,
        )
        return JSONResponse({"update": update})

    async def callback(request: Request) -> JSONResponse:
        data = await control_body(request)
        message_id = data.get("message_id")
        if not isinstance(data.get("data"), str) or not isinstance(message_id, int):
            return detail("give data (1-64 bytes) and message_id", 422)
        try:
            update = emu.callback_query(int(request.path_params["user_id"]), data["data"], message_id)
        except ValueError as exc:
            return detail(str(exc), 422)
        return JSONResponse({"update": update})

    async def recipients(request: Request) -> JSONResponse:
        """Replace the lists given: {"blocked": [...], "deactivated": [...], "missing": [...]}."""
        data = await control_body(request)
        with emu.lock:
            for key, target in (
                ("blocked", emu.blocked_users),
                ("deactivated", emu.deactivated_users),
                ("missing", emu.missing_chats),
            ):
                if isinstance(data.get(key), list):
                    target.clear()
                    target.update(data[key])
            counts = {
                "blocked": len(emu.blocked_users),
                "deactivated": len(emu.deactivated_users),
                "missing": len(emu.missing_chats),
            }
        return JSONResponse(counts)

    async def messages(request: Request) -> JSONResponse:
        chat = request.query_params.get("chat_id", "")
        if not chat:
            return detail("give chat_id", 422)
        chat_id: int | str = int(chat) if chat.lstrip("-").isdigit() else chat
        sent = emu.messages_to(chat_id)
        return JSONResponse(
            [
                {
                    "message_id": m.message_id,
                    "text": m.text,
                    "parse_mode": m.parse_mode,
                    "reply_markup": m.reply_markup,
                    "paid": m.paid,
                    "at": m.at,
                    "edits": m.edits,
                    "deleted": m.deleted,
                }
                for m in sent
            ]
        )

    # --- limits, webhook, faults, clock, state -------------------------------------------------------------

    async def limits(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                emu.set_limits(**(await control_body(request)))
            except (TypeError, ValueError) as exc:
                return detail(str(exc), 422)
        return JSONResponse(emu.rates.as_dict())

    async def set_webhook(request: Request) -> JSONResponse:
        emu.webhook_url = (await control_body(request)).get("url") or None
        return JSONResponse({"url": emu.webhook_url})

    async def fail_next(request: Request) -> JSONResponse:
        data = await control_body(request)
        emu.fail_next(
            int(data.get("status", 500)),
            data.get("retry_after"),
            int(data.get("times", 1)),
            method=data.get("method"),
            description=data.get("description"),
        )
        return JSONResponse({"armed": True})

    async def delay_next(request: Request) -> JSONResponse:
        data = await control_body(request)
        emu.delay_next(float(data.get("seconds", 1.0)), int(data.get("times", 1)), method=data.get("method"))
        return JSONResponse({"armed": True})

    async def clear_faults(request: Request) -> JSONResponse:
        emu.clear_faults()
        return JSONResponse({"cleared": True})

    async def advance(request: Request) -> JSONResponse:
        emu.advance(float((await control_body(request)).get("seconds", 0)))
        return JSONResponse({"now": emu.now()})

    async def state(request: Request) -> JSONResponse:
        with emu.lock:
            return JSONResponse(
                {
                    "balance": str(emu.balance),
                    "requests": dict(emu.requests),
                    "invoices": [
                        {"link": i.link, "payload": i.payload, "amount": i.amount} for i in emu.invoices.values()
                    ],
                    "charges": [
                        {"charge_id": c.charge_id, "payload": c.payload, "amount": c.amount, "refunded": c.refunded}
                        for c in emu.charges.values()
                    ],
                    "queries": [
                        {"id": q.query_id, "payload": q.payload, "ok": q.ok, "late": q.late}
                        for q in emu.queries.values()
                    ],
                    "messages": emu.sent_total,
                    "pending_updates": len(emu.pending),
                    "webhook": emu.webhook_info(),
                    "stats": emu.stats(),
                }
            )

    app.add_api_route("/_emu/tg/pay", pay, methods=["POST"])
    app.add_api_route("/_emu/tg/subscriptions/{charge_id}/renew", renew, methods=["POST"])
    app.add_api_route("/_emu/tg/refunds/{charge_id}/deliver", refund, methods=["POST"])
    app.add_api_route("/_emu/tg/balance", set_balance, methods=["PUT"])
    app.add_api_route("/_emu/tg/users/{user_id}/messages", user_message, methods=["POST"])
    app.add_api_route("/_emu/tg/users/{user_id}/callbacks", callback, methods=["POST"])
    app.add_api_route("/_emu/tg/recipients", recipients, methods=["PUT"])
    app.add_api_route("/_emu/tg/messages", messages, methods=["GET"])
    app.add_api_route("/_emu/tg/limits", limits, methods=["GET", "POST"])
    app.add_api_route("/_emu/tg/webhook", set_webhook, methods=["PUT"])
    app.add_api_route("/_emu/tg/faults/fail_next", fail_next, methods=["POST"])
    app.add_api_route("/_emu/tg/faults/delay_next", delay_next, methods=["POST"])
    app.add_api_route("/_emu/tg/faults", clear_faults, methods=["DELETE"])
    app.add_api_route("/_emu/tg/clock/advance", advance, methods=["POST"])
    app.add_api_route("/_emu/tg/state", state, methods=["GET"])
    return EmulatorApp(emu, app)
