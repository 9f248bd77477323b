"""An HTTP emulator of the Telegram Bot API for the bot, the notifications and the broadcasts, written from
shared/reference/payments_api.md §4, §8 and §10.3 and the Bot API server's source (tdlib/telegram-bot-api).

API: `POST|GET /bot<token>/<method>` with JSON, form or multipart parameters (form values are strings, objects
JSON-encoded, as aiogram sends them). Answers are `{"ok": true, "result": ...}` or `{"ok": false, "error_code": N,
"description": "..."[, "parameters": {...}]}` with the HTTP status `error_code`. A wrong token gets 401
"Unauthorized", an unknown method 404 "Not Found". Method names are case-insensitive. Each method is a function
registered with `@bot_method`; the modules say what they check:

  payments   Stars: createInvoiceLink, answerPreCheckoutQuery, refundStarPayment, editUserStarSubscription,
             getStarTransactions, getMyStarBalance; and the customer's side for tests (`pay`, `renew`, ...)
  messages   sendMessage, sendPhoto, sendDocument, editMessageText, deleteMessage, answerCallbackQuery; recipients that
             blocked the bot, were deactivated or do not exist (`blocked_users`, `deactivated_users`,
             `missing_chats`); the flood limits (`limits`: per chat 1/s with a burst of 3, 30/s overall, 20/min a
             group, 1000/s paid at 0.1 Star a message) answered with 429 and retry_after
  formatting text lengths, HTML entities, reply markup
  bot_setup  getMe, set/get/deleteMyCommands, set/getChatMenuButton, set/getMy(Short)Description
  updates    getUpdates (long polling), setWebhook, deleteWebhook, getWebhookInfo; the update queue
  webhook    the webhook's state, `enqueue`, `post_now`, `deliver`
  dispatcher posts queued updates to the webhook, in order, retrying with backoff, from its own thread
  users      `user_message` and `callback_query`: a user's Updates
  app        the ASGI app and the control endpoints

For tests (from any thread): `user_message` and `callback_query` queue a user's Update for the bot (getUpdates or
the webhook dispatcher takes it), `post_now` posts one and returns the bot's status; `pay`, `pre_checkout`,
`renew`, `refund_delivery` return the webhook `Delivery` Telegram would send, without sending or queueing it
(`deliver` posts one, `enqueue` queues one); `fail_next`/`delay_next` are the fault knobs; `advance` moves the clock
(`freeze_clock=True` makes it move only so); `messages_to`, `message_counts`, `stats`, `calls`, `requests` show
what happened (`keep_records=False` keeps only the figures, for long benchmarks). Control endpoints under /_emu/tg/
(see `app`) do the same over HTTP.

Descriptions not confirmed from a source are plausible guesses, marked "guessed" where they are raised.
"""

from tests.emulators.telegram.app import build_app
from tests.emulators.telegram.dispatcher import SECRET_HEADER
from tests.emulators.telegram.emulator import DEFAULT_SECRET, DEFAULT_TOKEN, TELEGRAM_IP, TelegramBotApiEmulator
from tests.emulators.telegram.formatting import parse_html
from tests.emulators.telegram.limits import Rates
from tests.emulators.telegram.messages import CAPTION_LIMIT, MESSAGE_LIMIT
from tests.emulators.telegram.payments import (
    CURRENCY,
    DEFAULT_USER_ID,
    PRE_CHECKOUT_TIMEOUT,
    SUBSCRIPTION_MAX_STARS,
    SUBSCRIPTION_PERIOD,
    refund_body,
    stars,
)
from tests.emulators.telegram.records import (
    ApiCall,
    CallbackQuery,
    Charge,
    Invoice,
    PreCheckoutQuery,
    SentMessage,
    Subscription,
)
from tests.emulators.telegram.wire import METHODS, QUERY_TOO_OLD, ApiError, Fault, Params, bad_request, bot_method

__all__ = [
    "CAPTION_LIMIT",
    "CURRENCY",
    "DEFAULT_SECRET",
    "DEFAULT_TOKEN",
    "DEFAULT_USER_ID",
    "MESSAGE_LIMIT",
    "METHODS",
    "PRE_CHECKOUT_TIMEOUT",
    "QUERY_TOO_OLD",
    "SECRET_HEADER",
    "SUBSCRIPTION_MAX_STARS",
    "SUBSCRIPTION_PERIOD",
    "TELEGRAM_IP",
    "ApiCall",
    "ApiError",
    "CallbackQuery",
    "Charge",
    "Fault",
    "Invoice",
    "Params",
    "PreCheckoutQuery",
    "Rates",
    "SentMessage",
    "Subscription",
    "TelegramBotApiEmulator",
    "bad_request",
    "bot_method",
    "build_app",
    "parse_html",
    "refund_body",
    "stars",
]
