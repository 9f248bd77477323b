"""Every model, imported here so Alembic and the app see the whole schema."""

from app.models.admin_jobs import BulkRun, ExportFile, JobState
from app.models.base import Base
from app.models.content import FaqCategory, FaqItem, MessageText, SystemSetting
from app.models.demo_panel import DemoAccountStatus, DemoPanelAccount, DemoPanelDevice, DemoPanelNode
from app.models.demo_payments import DemoInvoice, DemoInvoiceStatus
from app.models.notifications import (
    Broadcast,
    BroadcastDelivery,
    BroadcastStatus,
    DeliveryStatus,
    Notification,
)
from app.models.ops import (
    AuditLog,
    Experiment,
    ExperimentAssignment,
    ExperimentKind,
    JobRun,
    OutboxMessage,
    OutboxStatus,
    WebhookReceipt,
)
from app.models.panels import Node, PanelKind, Server, UsageDaily, VpnAccount
from app.models.payments import (
    Payment,
    PaymentEvent,
    PaymentProviderConfig,
    PaymentRefund,
    PaymentStatus,
    RefundStatus,
    SavedPaymentMethod,
)
from app.models.plans import Plan, PlanPrice, TrafficStrategy
from app.models.promo import (
    PromoCode,
    PromoCodeAmount,
    PromoKind,
    PromoRedemption,
    RedemptionStatus,
    promo_code_plans,
)
from app.models.referrals import ReferralReward, ReferralRewardKind
from app.models.staff import ApiToken, Staff, StaffRole, StaffSession
from app.models.stats import (
    DailyCheckouts,
    DailyRevenue,
    DailyStats,
    ExchangeRate,
    FinanceMonth,
    MrrDay,
    UserActivityDay,
)
from app.models.subscriptions import LIVE_STATUSES, Subscription, SubscriptionStatus, TrialGrant
from app.models.users import BrowserSession, LoginCode, User, UserIdentity

__all__ = [
    "LIVE_STATUSES",
    "ApiToken",
    "AuditLog",
    "Base",
    "Broadcast",
    "BroadcastDelivery",
    "BroadcastStatus",
    "BrowserSession",
    "BulkRun",
    "DailyCheckouts",
    "DailyRevenue",
    "DailyStats",
    "DeliveryStatus",
    "DemoAccountStatus",
    "DemoInvoice",
    "DemoInvoiceStatus",
    "DemoPanelAccount",
    "DemoPanelDevice",
    "DemoPanelNode",
    "ExchangeRate",
    "Experiment",
    "ExperimentAssignment",
    "ExperimentKind",
    "ExportFile",
    "FaqCategory",
    "FaqItem",
    "FinanceMonth",
    "JobRun",
    "JobState",
    "LoginCode",
    "MessageText",
    "MrrDay",
    "Node",
    "Notification",
    "OutboxMessage",
    "OutboxStatus",
    "PanelKind",
    "Payment",
    "PaymentEvent",
    "PaymentProviderConfig",
    "PaymentRefund",
    "PaymentStatus",
    "Plan",
    "PlanPrice",
    "PromoCode",
    "PromoCodeAmount",
    "PromoKind",
    "PromoRedemption",
    "RedemptionStatus",
    "ReferralReward",
    "ReferralRewardKind",
    "RefundStatus",
    "SavedPaymentMethod",
    "Server",
    "Staff",
    "StaffRole",
    "StaffSession",
    "Subscription",
    "SubscriptionStatus",
    "SystemSetting",
    "TrafficStrategy",
    "TrialGrant",
    "UsageDaily",
    "User",
    "UserActivityDay",
    "UserIdentity",
    "VpnAccount",
    "WebhookReceipt",
    "promo_code_plans",
]
