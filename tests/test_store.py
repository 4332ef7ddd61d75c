"""The store against the real embedded server over TCP."""
from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from bson.errors import InvalidDocument
from pymongo import MongoClient
from pymongo.errors import DocumentTooLarge, OperationFailure, WriteError

from normalizer.messages import Outbound
from store.database import DatabaseUnavailable, connect
from store.embedded import EmbeddedServer, EmbeddedServerError, free_port
from store.media import MediaStore
from store.models import InboundRecord, Reflection
from store.repos import Store, unit_of_work
from store.safe import UnsafeValue
from store.sessions import SessionPool
from tests.conftest import FIXTURES

INJECTIONS = [{"$gt": ""}, {"$ne": None}, ["a"], 5.5, None]


async def test_same_inbound_message_twice_is_stored_once(database):
    store = Store(database)
    assert await store.inbound.record("zalo", "m-1", "u1", {"text": "ổ gà"}) is True
    assert await store.inbound.record("zalo", "m-1", "u1", {"text": "ổ gà"}) is False
    assert await store.inbound.record("telegram", "m-1", "u1", {"text": "ổ gà"}) is True
    assert await store.inbound.count(channel="zalo") == 1


async def test_events_stored_together_keep_one_copy_each_and_finish_once(database):
    store = Store(database)
    await store.inbound.record("zalo", "m-1", "u1", {})
    outcomes = await store.inbound.record_many([("zalo", "m-1", "u1", {}), ("zalo", "m-2", "u1", {"n": 2}),
                                                ("zalo", "m-2", "u1", {"n": 2}), ("telegram", "m-1", "u2", {})])
    records = [r for r in outcomes if not isinstance(r, Exception)]
    assert len(records) == len(outcomes)
    assert [r and r.message_id for r in records] == [None, "m-2", None, "m-1"]
    assert await store.inbound.count() == 3
    assert [r.message_id for r in await store.inbound.unfinished()] == ["m-1", "m-2", "m-1"]
    ids = [r.id for r in records if r]
    assert await store.inbound.finish_many(ids, "done") == 2
    assert await store.inbound.finish_many(ids, "done") == 0  # a second commit must not redo them
    assert [r.channel for r in await store.inbound.unfinished()] == ["zalo"]


async def test_photo_round_trip_through_gridfs_keeps_type_and_size(database):
    media = MediaStore(database)
    data = (FIXTURES / "images" / "pothole.jpg").read_bytes()
    file_id = await media.save(data, content_type="image/jpeg", filename="p.jpg")
    assert await media.load(file_id) == data
    info = await media.info(file_id)
    assert info["content_type"] == "image/jpeg" and info["size"] == len(data)
    with pytest.raises(KeyError):
        await media.load("not-an-object-id")


async def test_a_photo_larger_than_one_chunk_reads_back_whole_through_gridfs(database):
    media = MediaStore(database)
    data = bytes(range(256)) * 2400  # 614,400 bytes: three GridFS chunks
    file_id = await media.save(data, content_type="image/jpeg", filename="zalo-m1")
    assert await media.load(file_id) == data
    assert (await media.info(file_id))["size"] == len(data)
    assert await database.db["media.chunks"].count_documents({}) == 3


@pytest.mark.parametrize("bad", INJECTIONS)
async def test_operator_injection_never_reaches_a_query(database, bad):
    store = Store(database)
    await store.reflections.insert(Reflection(code="PA-2026-000001", channel="zalo", sender="u1", content="x"))
    with pytest.raises(UnsafeValue):
        await store.reflections.get(bad)
    with pytest.raises(UnsafeValue):
        await store.citizens.by_phone(bad)
    with pytest.raises(UnsafeValue):
        await store.inbound.record("zalo", bad, "u1", {})
    with pytest.raises(UnsafeValue):
        await store.conversations.get("zalo", bad)


async def test_dollar_strings_are_matched_literally(database):
    store = Store(database)
    await store.reflections.insert(Reflection(code="PA-2026-000001", channel="zalo", sender="u1", content="x"))
    assert await store.reflections.get("$gt") is None
    assert await store.reflections.get("PA-2026-000001") is not None


async def test_codes_are_sequential_per_year(database):
    store = Store(database)
    codes = [await store.reflections.next_code(2026) for _ in range(3)]
    assert codes == ["PA-2026-000001", "PA-2026-000002", "PA-2026-000003"]
    assert await store.reflections.next_code(2027) == "PA-2027-000001"


async def test_transaction_rolls_back_everything_on_error(database):
    with pytest.raises(RuntimeError):
        async with unit_of_work(database) as store:
            await store.outbox.enqueue("k1", "zalo", "u1", Outbound(text="xin chào"))
            await store.inbound.record("zalo", "m-9", "u1", {})
            raise RuntimeError("crash in the middle")
    store = Store(database)
    assert await store.outbox.all() == []
    assert await store.inbound.count() == 0


async def test_outbox_key_is_idempotent(database):
    store = Store(database)
    assert await store.outbox.enqueue("in:1:0", "zalo", "u1", Outbound(text="a")) is True
    assert await store.outbox.enqueue("in:1:0", "zalo", "u1", Outbound(text="a")) is False
    assert len(await store.outbox.all()) == 1


async def test_citizen_is_one_person_across_channels(database):
    store = Store(database)
    a = await store.citizens.remember("+84912345678", "Nguyễn Văn An", "zalo", "z1")
    b = await store.citizens.remember("+84912345678", "Nguyễn Văn An", "telegram", "t1")
    assert a.id == b.id
    assert {(i.channel, i.address) for i in b.identities} == {("zalo", "z1"), ("telegram", "t1")}
    again = await store.citizens.remember("+84912345678", "Nguyễn Văn An", "zalo", "z1")
    assert len(again.identities) == 2
    by_telegram = await store.citizens.by_identity("telegram", "t1")
    assert by_telegram is not None and by_telegram.id == a.id
    by_zalo = await store.citizens.by_identity("zalo", "z1")
    assert by_zalo is not None and a == by_zalo.model_copy(update={"identities": a.identities})
    moved = await store.citizens.remember("+84912345678", "Nguyễn Văn An", "email", "an@example.vn",
                                          email="an@example.vn", contact_address="12 Hùng Vương")
    assert moved == await store.citizens.by_phone("+84912345678")  # what the caller gets is what is stored
    assert moved.email == "an@example.vn" and len(moved.identities) == 3


async def test_a_new_citizen_is_returned_as_stored(database):
    store = Store(database)
    new = await store.citizens.remember("+84987654321", "Trần Thị Bình", "telegram", "42", email="binh@example.vn")
    assert new == await store.citizens.by_phone("+84987654321")


def test_embedded_server_keeps_data_across_restart(tmp_path: Path):
    server = EmbeddedServer(tmp_path / "db", free_port())
    server.start()
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(server.uri)
        client.gw.things.insert_one({"_id": "kept", "v": "ổ gà"})
    finally:
        server.stop()
    server.start()
    try:
        client = MongoClient(server.uri)
        kept = client.gw.things.find_one({"_id": "kept"})
        assert kept is not None and kept["v"] == "ổ gà"
    finally:
        server.stop()


def test_embedded_server_refuses_a_taken_port(tmp_path: Path, db_server: EmbeddedServer):
    with pytest.raises(EmbeddedServerError, match=f"port {db_server.port} is already in use"):
        EmbeddedServer(tmp_path / "db", db_server.port).start()


def test_embedded_server_refuses_an_unusable_directory(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(EmbeddedServerError, match="cannot create database directory"):
        EmbeddedServer(blocker / "db", free_port()).start()


async def test_unreachable_mongodb_uri_fails_fast_with_a_clear_error():
    with pytest.raises(DatabaseUnavailable, match="unreachable"):
        await connect(f"mongodb://user:secret@127.0.0.1:{free_port()}/", "x", timeout_ms=1500)


async def test_unreachable_uri_error_does_not_leak_the_password():
    with pytest.raises(DatabaseUnavailable) as info:
        await connect(f"mongodb://user:secret@127.0.0.1:{free_port()}/", "x", timeout_ms=500)
    assert "secret" not in str(info.value)


async def test_a_committed_unit_of_work_survives_the_database_killed_right_after(tmp_path: Path):
    """The embedded server commits a transaction without flushing its log (j: true or not):
    killed right after, it lost every such commit until `unit_of_work` flushed the journal."""
    port, codes = free_port(), [f"PA-2026-{n:06d}" for n in range(1, 4)]
    for code in codes:
        server = EmbeddedServer(tmp_path / "db", port)
        server.start()
        database = await connect(server.uri, "durable", timeout_ms=5000)
        async with unit_of_work(database) as store:
            await store.outbox.enqueue(f"reply:{code}", "telegram", "42", Outbound(text=f"Mã số {code}"))
        server.kill()  # SIGKILL: no shutdown, no checkpoint
        await database.close()
    server = EmbeddedServer(tmp_path / "db", port)
    server.start()
    try:
        database = await connect(server.uri, "durable", timeout_ms=5000)
        assert [i.id for i in await Store(database).outbox.all()] == [f"reply:{c}" for c in codes]
        await database.close()
    finally:
        server.stop()


_HOLD_A_TRANSACTION = """
import asyncio, sys
from store.database import connect
from store.repos import unit_of_work
from store.sessions import SessionPool

async def main(uri, name):
    database = await connect(uri, name)
    database.transactions = SessionPool(database, "gateway", size=2)  # as Gateway.start does
    await database.transactions.open()
    async with unit_of_work(database) as store:  # a scheduler pass moving a case
        await store.database.db.reflections.update_one(
            {"_id": "case-1"}, {"$set": {"status": "late"}}, session=store.reflections.s)
        print("inside", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_gateway_sigkilled_inside_a_scheduler_transaction_leaves_nothing_locked_after_restart(
        db_server: EmbeddedServer) -> None:
    """Every transaction the gateway runs is on a session it recorded at start: killed inside
    one, the next start ends it, and the case it was moving can be written at once (without
    that, the dead transaction holds the case until the server's 60 s lifetime runs out)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    database = await connect(db_server.uri, name, timeout_ms=5000)
    await database.db.reflections.insert_one({"_id": "case-1", "status": "forwarded"})
    child = subprocess.Popen([sys.executable, "-c", _HOLD_A_TRANSACTION, db_server.uri, name],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "inside"
    finally:
        child.kill()
        child.wait(10)

    async def move_case() -> None:
        async with unit_of_work(database) as store:
            await store.database.db.reflections.update_one(
                {"_id": "case-1"}, {"$set": {"status": "answered"}}, session=store.reflections.s)

    with pytest.raises(OperationFailure) as held:  # the dead run's transaction holds the case
        await move_case()
    assert held.value.has_error_label("TransientTransactionError")
    restarted = SessionPool(database, "gateway", size=2)
    await restarted.open()  # the next start
    await move_case()
    moved = await database.db.reflections.find_one({"_id": "case-1"})
    assert moved is not None and moved["status"] == "answered"
    await restarted.close()
    await database.client.drop_database(name)
    await database.close()


async def test_poison_event_in_a_group_write_fails_alone(database):
    """One event the store can never take (a value that is not plain, a document over the
    server's limit) fails alone: the other events written with it are stored and queued."""
    store = Store(database)
    huge = {"raw": "x" * 17_000_000}  # over the 16 MiB document limit
    nul_key = {"te\x00xt": "a key BSON cannot hold"}  # refused before sending: the whole batch was
    outcomes = await store.inbound.record_many([("email", "ok-1", "a@x.vn", {}), ("email", "big", "b@x.vn", huge),
                                                ("email", "bad\x00id", "c@x.vn", {}), ("zalo", "ok-2", "u1", {}),
                                                ("zalo", "nul", "u2", nul_key)])
    ok_1, big, bad, ok_2, unencodable = outcomes
    assert isinstance(unencodable, InvalidDocument)
    assert isinstance(ok_1, InboundRecord) and isinstance(ok_2, InboundRecord)
    assert isinstance(big, (WriteError, DocumentTooLarge))  # refused by the server or before sending
    assert isinstance(bad, UnsafeValue)
    assert sorted(r.message_id for r in await store.inbound.unfinished()) == ["ok-1", "ok-2"]


def test_outbox_keys_are_built_and_read_back_by_one_type() -> None:
    """The keys the agency loop and the result fallback read back name their case; a key no
    code built, or one made of hostile text, names none."""
    from store.outbox_keys import Kind, OutboxKey, outbox_key

    key = outbox_key(Kind.RESULT, "PA-2026-000123", 2, "email", "an@example.vn")
    assert key == "result:PA-2026-000123:2:email:an@example.vn"
    parsed = OutboxKey.parse(key)
    assert parsed is not None and parsed.kind is Kind.RESULT and parsed.case_code == "PA-2026-000123"
    assert OutboxKey.parse(outbox_key(Kind.STAFF_FAILED, "65a1")).to_staff  # type: ignore[union-attr]
    assert OutboxKey.parse(outbox_key(Kind.FORWARD, "PA-2026-000001", 1)).to_staff is False  # type: ignore[union-attr]
    expire = OutboxKey.parse(outbox_key(Kind.EXPIRE, "zalo", "u1", "202612021030"))
    assert expire is not None and expire.case_code is None  # not about a case
    for hostile in ["", ":", "alert-1", "$where:1", "fwd", "staff-:x", "RESULT:PA-1"]:
        found = OutboxKey.parse(hostile)
        assert found is None or found.case_code in (None, "")
