"""The demo account ``liveop demo`` serves: an admin, a colleague, a team, canned responses,
and sample conversations on every channel, so the inbox shows the product on first sign-in.

Everything is written through the same engine and directory calls the APIs use, so the demo
shows exactly what a real account's inbox would (unread counts, owners, notes, a transfer, a
rating), and nothing is sent anywhere: the SMS and email samples only arrive; replying to them
queues until the account configures a channel in Admin → Channels.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from server.conversations import ConversationEngine, Origin
from server.services import Services
from storage.models import Operator, SourceApp, UserInfo

EMAIL = "demo@example.com"
COLLEAGUE_EMAIL = "sam@example.com"
CANNED = (
    ("Greeting", "welcome", "Hi {fname}, I'm {operator}. How can I help you today?"),
    ("Email follow-up", "followup", "Thanks {fname}! I'll follow up at {email} shortly."),
    ("Closing", "", "Glad I could help, {fname}. Have a great day! - {operator}"),
)


@dataclass(frozen=True, slots=True)
class DemoAccount:
    account_id: str
    api_key: str
    operator_id: int
    email: str
    password: str


async def create_demo(svc: Services) -> DemoAccount:
    directory = svc.directory
    account, key = await directory.create_account("Demo Company")
    password = secrets.token_urlsafe(9)
    alex = await directory.create_operator(
        account.id, name="Alex Demo", email=EMAIL, password=password, is_admin=True
    )
    # Nobody signs in as the colleague: they exist so the samples show a note and a transfer
    # between two people. An admin can set their password in Admin → Operators.
    sam = await directory.create_operator(
        account.id,
        name="Sam Rivera",
        email=COLLEAGUE_EMAIL,
        password=secrets.token_urlsafe(18),
        is_admin=False,
    )
    await directory.create_team(account.id, name="Support", member_ids=[alex.id, sam.id])
    for name, tag, message in CANNED:
        await directory.create_canned(account.id, name=name, tag=tag, message=message)
    await _conversations(svc.engine, account.id, alex, sam)
    return DemoAccount(account.id, key, alex.id, EMAIL, password)


async def _conversations(
    engine: ConversationEngine, account_id: str, alex: Operator, sam: Operator
) -> None:
    """Oldest first, so the inbox (sorted by activity) shows the freshest on top."""

    async def start(source: SourceApp, info: UserInfo, text: str) -> str:
        first = await engine.send(
            account_id, convo_id=None, text=text, user_info=info, origin=Origin(source_app=source)
        )
        return first.conversation.id

    async def say(convo: str, text: str, operator: Operator | None = None) -> None:
        await engine.send(
            account_id, convo_id=convo, text=text, operator_id=operator.id if operator else None
        )

    rated = await start(
        "liveoperator", UserInfo(fname="Noah", lname="Kim"), "How do I reset my password?"
    )
    await say(
        rated, "Use “Forgot password” on the sign-in page: the link comes within a minute.", alex
    )
    await say(rated, "That worked, thanks!")
    await engine.set_status(account_id, rated, "resolved", alex)
    await engine.rate(account_id, rated, "5", "Quick and friendly")

    transferred = await start(
        "liveoperator",
        UserInfo(fname="Lena", lname="Fischer", email="lena@example.com"),
        "My API key stopped working after I rotated it.",
    )
    await say(transferred, "Sorry about that, Lena. Let me get an admin to look at it.", sam)
    await engine.note(
        account_id, transferred, sam.id, "Rotated at 10:02; the old key is revoked. Needs an admin."
    )
    await engine.transfer(account_id, transferred, sam, to_operator=alex.id)

    email = await start(
        "emailbroadcast",
        UserInfo(fname="Priya", lname="Shah", email="priya@example.com"),
        "Hello,\n\nCould you send me a copy of my last invoice?\n\nThanks,\nPriya",
    )
    await engine.note(account_id, email, sam.id, "Annual plan: invoices also go to finance@.")

    live = await start("liveoperator", UserInfo(fname="Omar"), "Do you ship to Canada?")
    await say(live, "Yes! Shipping to Canada takes 3-5 business days.", alex)
    await say(live, "Great, and is there a customs fee?")

    handed_over = await start(
        "chatbot",
        UserInfo(fname="Maria", lname="Lopez", email="maria@example.com"),
        "Hi, I was charged twice for my March invoice.",
    )
    bot = "I can help with billing. Could you share the invoice number?"
    await engine.send(account_id, convo_id=handed_over, text=bot, bot=True)
    await say(handed_over, "INV-2041. I'd like the duplicate charge refunded.")
    bot = "Refunds need a person: I'm connecting you with our team."
    await engine.send(account_id, convo_id=handed_over, text=bot, bot=True)
    await engine.to_queue(account_id, handed_over)

    await start(
        "smsbroadcast",
        UserInfo(fname="Jordan", phone="+15555550123"),
        "Is my order #8812 shipping today?",
    )
