"""The audit log: one append-only hash chain in the SQL store, with its head kept apart.

Each entry's hash covers the previous entry's hash and every field of the entry, except the prompt
itself: the hash covers `prompt_sha256` (the digest of the recorded prompt), so a prompt can be blanked
later (`redact`) and the chain still verifies. The head row (`audit_head`) holds the last sequence number
and hash; it is written in the same transaction as the entry, so cutting entries off the end shows as a
head that points past the last entry. Appends are serialised: `BEGIN IMMEDIATE` on SQLite, a
`SELECT ... FOR UPDATE` of the head row on PostgreSQL.

Appends are idempotent per output: a second append for the same job id and output sha256 returns the
entry already written. The service stages each output's entry (`AuditPending`) in the transaction that
commits the job, appends it right after, and `flush_pending()` writes whatever a crash left staged; so every
committed output gets exactly one entry, however often the append is retried.

`verify()` names every entry that was edited, deleted, reordered or cut off. What it cannot see is a
rewrite of the whole chain *and* its head by someone with write access to the store: keep the printed head
hash somewhere else (a log, a ticket) to close that gap.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, Boolean, Float, Integer, String, Text, delete, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from conjure.db import Base, get_engine
from conjure.provenance.record import GenerationRecord, sha256_hex, utc_now

GENESIS = "0" * 64
_HASHED = ("seq", "prev_hash", "created_at", "job_id", "user", "prompt_sha256", "negative_prompt_sha256",
           "verdicts", "policy_version", "model", "model_hash", "params", "seed", "output_sha256", "manifest_id",
           "watermark_id")


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)   # 1, 2, 3, ...
    entry_hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(40))
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    user: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)        # recorded form; NULL once redacted
    prompt_sha256: Mapped[str] = mapped_column(String(64))
    negative_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    negative_prompt_sha256: Mapped[str] = mapped_column(String(64))
    redacted: Mapped[bool] = mapped_column(Boolean, default=False)
    verdicts: Mapped[str] = mapped_column(Text)                            # canonical JSON
    policy_version: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200))
    model_hash: Mapped[str] = mapped_column(String(100))
    params: Mapped[str] = mapped_column(Text)                              # canonical JSON
    seed: Mapped[int] = mapped_column(BigInteger)
    output_sha256: Mapped[str] = mapped_column(String(64), index=True)
    manifest_id: Mapped[str] = mapped_column(String(200))
    watermark_id: Mapped[int] = mapped_column(BigInteger, index=True)


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)             # always 1: the lock row
    seq: Mapped[int] = mapped_column(Integer)
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditPending(Base):
    """An output's audit entry, staged in the transaction that commits its job and removed once appended."""

    __tablename__ = "audit_pending"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    output_sha256: Mapped[str] = mapped_column(String(64))
    fields: Mapped[str] = mapped_column(Text)                              # JSON of the entry's fields
    staged_at: Mapped[float] = mapped_column(Float)                        # unix seconds


@dataclass
class ChainReport:
    ok: bool
    entries: int
    head_seq: int | None
    head_hash: str | None
    problems: list[dict] = field(default_factory=list)    # {"seq": n, "kind": ..., "detail": ...}

    def to_dict(self) -> dict:
        return {"ok": self.ok, "entries": self.entries, "head_seq": self.head_seq, "head_hash": self.head_hash,
                "problems": self.problems}


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(fields: dict) -> str:
    """sha256 over the canonical JSON of the hashed fields (never the prompt text itself)."""
    return sha256_hex(canonical_json({k: fields[k] for k in _HASHED}))


def _fields(record: GenerationRecord, output_sha256: str, manifest_id: str, prompt_mode: str | None) -> dict:
    rec = record.recorded(prompt_mode)
    if len(output_sha256) != 64 or any(c not in "0123456789abcdef" for c in output_sha256):
        raise ValueError(f"output_sha256 must be 64 lower-case hex digits, got {output_sha256!r}")
    try:
        verdicts, params = canonical_json(rec["verdicts"]), canonical_json(rec["params"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"verdicts and params must be JSON-able (no NaN): {e}") from e
    return {"created_at": rec["created_at"] or utc_now(), "job_id": rec["job_id"], "user": rec["user"],
            "prompt": rec["prompt"], "prompt_sha256": sha256_hex(rec["prompt"]),
            "negative_prompt": rec["negative_prompt"], "negative_prompt_sha256": sha256_hex(rec["negative_prompt"]),
            "verdicts": verdicts, "policy_version": rec["policy_version"], "model": rec["model"],
            "model_hash": rec["model_hash"], "params": params, "seed": rec["seed"],
            "output_sha256": output_sha256, "manifest_id": manifest_id or "", "watermark_id": rec["watermark_id"]}


def _lock_head(conn) -> AuditHead | None:
    """Start the serialised section and return the head row (None for an empty log)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")   # takes the write lock now, not at the first write
        return conn.execute(select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1)).first()
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        conn.execute(pg_insert(AuditHead).values(id=1, seq=0, entry_hash=GENESIS).on_conflict_do_nothing())
    row = conn.execute(select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1).with_for_update()).first()
    return row


def append(record: GenerationRecord, output_sha256: str, manifest_id: str = "", *, prompt_mode: str | None = None,
           url: str | None = None) -> AuditEntry:
    """Append one entry for an output (its sha256 and manifest id) and move the head; returns the entry.

    Idempotent per output: when the log already holds an entry for this job id and output sha256, that
    entry is returned and nothing is written.
    """
    return _append_fields(_fields(record, output_sha256, manifest_id, prompt_mode), url)


def stage(record: GenerationRecord, output_sha256: str, manifest_id: str = "", *,
          prompt_mode: str | None = None) -> AuditPending:
    """The pending row of an output's entry, to add in the transaction that commits the output.

    The fields are fixed here (time, prompt in its recordable form), so a later `flush_pending` writes the
    entry that `append` would have written now.
    """
    fields = _fields(record, output_sha256, manifest_id, prompt_mode)
    return AuditPending(job_id=fields["job_id"], output_sha256=output_sha256, fields=canonical_json(fields),
                        staged_at=time.time())


def flush_pending(url: str | None = None, job_ids: list[str] | None = None, min_age_s: float = 0.0) -> int:
    """Append every staged entry (only those of `job_ids` when given, only those staged at least `min_age_s`
    ago), oldest first, and remove each once it is in the log; returns how many entries were written.

    Safe to run from several processes at once and to repeat after a crash: appends are idempotent.
    """
    engine = get_engine(url)
    stmt = select(AuditPending.id, AuditPending.fields).where(AuditPending.staged_at <= time.time() - min_age_s)
    if job_ids is not None:
        stmt = stmt.where(AuditPending.job_id.in_(job_ids))
    with engine.connect() as conn:
        rows = conn.execute(stmt.order_by(AuditPending.id)).all()
    written = 0
    for row in rows:
        written += _append_fields(json.loads(row.fields), url, count=True)
        with engine.begin() as conn:
            conn.execute(delete(AuditPending).where(AuditPending.id == row.id))
    return written


def _append_fields(fields: dict, url: str | None, count: bool = False):
    """The serialised section of `append`: skip an output already in the log, else link, insert and move the
    head. Returns the entry, or with `count` 1 if it wrote one and 0 if not."""
    engine = get_engine(url)
    with engine.connect() as conn:
        head = _lock_head(conn)
        existing = conn.execute(select(AuditEntry).where(AuditEntry.job_id == fields["job_id"],
                                                         AuditEntry.output_sha256 == fields["output_sha256"])
                                .order_by(AuditEntry.seq).limit(1)).first()
        if existing is not None:
            conn.rollback()
            return 0 if count else AuditEntry(**{c: getattr(existing, c) for c in AuditEntry.__table__.columns.keys()})
        seq, prev = (head.seq + 1, head.entry_hash) if head is not None else (1, GENESIS)
        fields.update(seq=seq, prev_hash=prev)
        redacted = fields.pop("redacted", False)   # a staged entry redacted before it was appended
        fields["entry_hash"] = entry_hash(fields)
        conn.execute(insert(AuditEntry).values(**fields, redacted=redacted))
        if head is None:
            conn.execute(insert(AuditHead).values(id=1, seq=seq, entry_hash=fields["entry_hash"]))
        else:
            conn.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=seq, entry_hash=fields["entry_hash"]))
        conn.commit()
    return 1 if count else AuditEntry(**fields, redacted=redacted)


def redact(job_id: str, url: str | None = None) -> int:
    """Blank the prompts of every entry of `job_id` (the chain stays valid), staged ones included; returns how
    many entries of the log were redacted."""
    with get_engine(url).begin() as conn:
        result = conn.execute(update(AuditEntry).where(AuditEntry.job_id == job_id)
                              .values(prompt=None, negative_prompt=None, redacted=True))
        for row in conn.execute(select(AuditPending.id, AuditPending.fields).where(AuditPending.job_id == job_id)):
            fields = json.loads(row.fields) | {"prompt": None, "negative_prompt": None, "redacted": True}
            conn.execute(update(AuditPending).where(AuditPending.id == row.id).values(fields=canonical_json(fields)))
        return result.rowcount


def _check_entry(row, expected_seq: int, prev_hash: str) -> list[dict]:
    problems = []
    if row.seq != expected_seq:
        kind = "deleted" if row.seq > expected_seq else "reordered"
        problems.append({"seq": expected_seq, "kind": kind,
                         "detail": f"expected entry {expected_seq}, found entry {row.seq}"})
    if row.prev_hash != prev_hash:
        problems.append({"seq": row.seq, "kind": "broken link",
                         "detail": "prev_hash does not match the hash of the entry before it "
                                   "(an entry before it was deleted, reordered or edited)"})
    if entry_hash({k: getattr(row, k) for k in _HASHED}) != row.entry_hash:
        problems.append({"seq": row.seq, "kind": "edited", "detail": "the entry's fields do not match its hash"})
    for text, digest, name in ((row.prompt, row.prompt_sha256, "prompt"),
                               (row.negative_prompt, row.negative_prompt_sha256, "negative prompt")):
        if text is None and not row.redacted:
            problems.append({"seq": row.seq, "kind": "edited", "detail": f"the {name} is missing but not redacted"})
        elif text is not None and sha256_hex(text) != digest:
            problems.append({"seq": row.seq, "kind": "edited", "detail": f"the {name} does not match its digest"})
    return problems


def _moved_entries(rows, suspects: set[int]) -> list[dict]:
    """Among entries that fail their hash, those that verify under another suspect's position: moved."""
    found = []
    for row in rows:
        if row.seq not in suspects:
            continue
        fields = {k: getattr(row, k) for k in _HASHED}
        for seq in suspects - {row.seq}:
            if entry_hash({**fields, "seq": seq}) == row.entry_hash:
                found.append({"seq": row.seq, "kind": "reordered",
                              "detail": f"position {row.seq} holds entry {seq}"})
    return found


def verify(url: str | None = None) -> ChainReport:
    """Walk the chain in sequence order and name every entry that does not check out."""
    engine = get_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(AuditEntry).order_by(AuditEntry.seq)).all()
        head = conn.execute(select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == 1)).first()
    problems: list[dict] = []
    prev, expected = GENESIS, 1
    for row in rows:
        problems += _check_entry(row, expected, prev)
        prev, expected = row.entry_hash, row.seq + 1
    problems += _moved_entries(rows, {p["seq"] for p in problems if p["kind"] == "edited"})
    last_seq = rows[-1].seq if rows else 0
    if head is None and rows:
        problems.append({"seq": None, "kind": "head missing", "detail": "entries exist but the head row is gone"})
    elif head is not None and (head.seq, head.entry_hash) != (last_seq, prev if rows else head.entry_hash):
        if head.seq > last_seq:
            detail = f"the head points at entry {head.seq} but the log ends at entry {last_seq}"
            problems.append({"seq": last_seq + 1, "kind": "truncated", "detail": detail})
        else:
            problems.append({"seq": last_seq, "kind": "head mismatch",
                             "detail": "the head's hash is not the last entry's hash"})
    return ChainReport(not problems, len(rows), head.seq if head else None, head.entry_hash if head else None,
                       problems)


def find(watermark_id: int | None = None, output_sha256: str | None = None, url: str | None = None) -> list[dict]:
    """Entries matching an output's sha256 (exact) or watermark id, newest first, as dicts.

    Entries still staged for the matching outputs are appended first, so a lookup right after a job
    succeeds finds its outputs."""
    if watermark_id is None and output_sha256 is None:
        raise ValueError("give a watermark id or an output sha256 to look up")
    _flush_staged_for(output_sha256, url)
    stmt = select(AuditEntry).order_by(AuditEntry.seq.desc())
    stmt = stmt.where(AuditEntry.output_sha256 == output_sha256) if output_sha256 is not None \
        else stmt.where(AuditEntry.watermark_id == int(watermark_id))
    with get_engine(url).connect() as conn:
        rows = conn.execute(stmt).all()
    return [entry_dict(r) for r in rows]


def _flush_staged_for(output_sha256: str | None, url: str | None) -> None:
    """Append the staged entries a lookup could match before it reads the chain.

    The service commits a job together with its staged entries and appends them right after, so a client
    can see the job succeed a moment before its entries are in the chain; a lookup in that moment must still
    find them. A sha256 lookup flushes the jobs staged for that output; a watermark lookup flushes every
    staged entry (the watermark id sits inside the staged fields). Both are idempotent.
    """
    stmt = select(AuditPending.job_id)
    if output_sha256 is not None:
        stmt = stmt.where(AuditPending.output_sha256 == output_sha256)
    with get_engine(url).connect() as conn:
        job_ids = sorted({row.job_id for row in conn.execute(stmt)})
    if job_ids:
        flush_pending(url, job_ids if output_sha256 is not None else None)


def entry_dict(row) -> dict:
    d = {c: getattr(row, c) for c in AuditEntry.__table__.columns.keys()}
    d["verdicts"], d["params"] = json.loads(d["verdicts"]), json.loads(d["params"])
    return d
