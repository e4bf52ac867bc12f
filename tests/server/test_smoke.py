from tests.conftest import Tenant


async def test_visitor_and_operator_hold_a_conversation(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("Hello", userInfo={"fname": "Jane"})
    polled = await tenant.ok("poll", convoID=convo, operatorID=tenant.operator_id)
    assert [m["message"] for m in polled["messages"]] == ["Hello"]
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="Hi")
    history = await tenant.ok("gethistory", convoID=convo)
    assert [m["sender"] for m in history["messages"]] == ["visitor", "operator"]
    assert history["conversation"]["operatorID"] == tenant.operator_id
