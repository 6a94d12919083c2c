"""The campaign registry: campaigns, their members (group, stratum, rank, score, reason)
and their evaluations, in a real database (SQLAlchemy).

SQLite under the workspace by default, PostgreSQL in the production profile. Two
writers creating lists at once must not both enrol a customer their suppression rules
forbid: `Registry.writing()` is one transaction that first takes the registry's writer
lock (`BEGIN IMMEDIATE` on SQLite, `SELECT ... FOR UPDATE` on a one-row lock table on
PostgreSQL), so the check of who is already enrolled and the insert of the new members
see the same state. Unique constraints (one name per campaign, one row per member)
back that up; nothing is written half: a failed transaction rolls back whole.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from clm.errors import ClmError

__all__ = [
    "Campaign",
    "CampaignNotFound",
    "Evaluation",
    "Member",
    "Registry",
    "RegistryError",
]

GROUPS = ("treatment", "control")


class RegistryError(ClmError):
    """The campaign registry cannot be reached or refuses a write."""


class CampaignNotFound(RegistryError):
    """No campaign with that id."""


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    scene: Mapped[str] = mapped_column(String(20))
    # What the campaign tries to move: a product (product scene) or `retention`.
    measure: Mapped[str] = mapped_column(String(40), index=True)
    product: Mapped[str | None] = mapped_column(String(40), nullable=True)
    channel: Mapped[str] = mapped_column(String(40))
    as_of: Mapped[date] = mapped_column(Date)
    # First day of the contact month (the month after the list date).
    contact_month: Mapped[date] = mapped_column(Date, index=True)
    running_until: Mapped[date] = mapped_column(Date)
    select_expr: Mapped[str] = mapped_column(Text)
    rank_by: Mapped[str] = mapped_column(String(80))
    max_members: Mapped[int | None] = mapped_column(Integer, nullable=True)
    holdout: Mapped[float] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="running")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Model versions that scored the list, counts of who was left out and why.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("campaign_id", "customer_id", name="one_row_per_member"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    group: Mapped[str] = mapped_column("grp", String(10))
    stratum: Mapped[str] = mapped_column(String(60))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, default="")


class Evaluation(Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    horizon_days: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    report_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class WriterLock(Base):
    """One row; a writer locks it for the length of its transaction (PostgreSQL)."""

    __tablename__ = "writer_lock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


@dataclass(frozen=True)
class Enrolment:
    """A customer's membership in a campaign, as suppression needs it."""

    customer_id: str
    campaign_id: int
    measure: str
    group: str
    contact_month: date
    running_until: date


class Registry:
    """The campaign database at `url` (tables created on first use)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        try:
            Base.metadata.create_all(self.engine)
            with self.engine.begin() as con:
                if con.execute(select(func.count()).select_from(WriterLock)).scalar() == 0:
                    with contextlib.suppress(IntegrityError):
                        con.execute(insert(WriterLock).values(id=1))
        except OperationalError as exc:
            raise RegistryError(
                f"campaign registry {_redact(url)} unreachable: {exc.orig}"
            ) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def for_settings(cls, settings: Any) -> Registry:
        url = settings.campaign_database_url
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return cls(url)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextlib.contextmanager
    def writing(self) -> Iterator[Session]:
        """One transaction holding the registry's writer lock; committed on success."""
        with self._sessions() as session:
            try:
                if self.engine.dialect.name == "sqlite":
                    session.execute(text("BEGIN IMMEDIATE"))
                else:
                    session.execute(select(WriterLock).where(WriterLock.id == 1).with_for_update())
                yield session
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                raise RegistryError(f"campaign registry refused the write: {exc.orig}") from None
            except BaseException:
                session.rollback()
                raise

    # ------------------------------------------------------------------ reads
    def campaign(self, campaign_id: int) -> Campaign:
        with self.reading() as session:
            found = session.get(Campaign, campaign_id)
        if found is None:
            raise CampaignNotFound(
                f"no campaign with id {campaign_id}; `clm campaign list` shows them"
            )
        return found

    def campaigns(self) -> list[Campaign]:
        with self.reading() as session:
            return list(session.scalars(select(Campaign).order_by(Campaign.id)))

    def members(self, campaign_id: int, group: str | None = None) -> list[Member]:
        with self.reading() as session:
            query = select(Member).where(Member.campaign_id == campaign_id)
            if group is not None:
                query = query.where(Member.group == group)
            return list(session.scalars(query.order_by(Member.rank)))

    def group_counts(self, campaign_id: int) -> dict[str, int]:
        with self.reading() as session:
            rows = session.execute(
                select(Member.group, func.count())
                .where(Member.campaign_id == campaign_id)
                .group_by(Member.group)
            ).all()
        counts = {g: 0 for g in GROUPS}
        counts.update({str(g): int(n) for g, n in rows})
        return counts

    def evaluations(self, campaign_id: int) -> list[Evaluation]:
        with self.reading() as session:
            return list(
                session.scalars(
                    select(Evaluation)
                    .where(Evaluation.campaign_id == campaign_id)
                    .order_by(Evaluation.id)
                )
            )

    @staticmethod
    def enrolments(session: Session, since: date) -> list[Enrolment]:
        """Memberships of campaigns still running on or after `since` (inside a write)."""
        rows = session.execute(
            select(
                Member.customer_id,
                Campaign.id,
                Campaign.measure,
                Member.group,
                Campaign.contact_month,
                Campaign.running_until,
            )
            .join(Campaign, Campaign.id == Member.campaign_id)
            .where(Campaign.running_until >= since, Campaign.status == "running")
        ).all()
        return [Enrolment(*row) for row in rows]

    # ----------------------------------------------------------------- writes
    def add_evaluation(
        self,
        campaign_id: int,
        horizon_days: int,
        result: dict[str, Any],
        report_path: str | None,
        mlflow_run_id: str | None,
    ) -> int:
        with self.writing() as session:
            evaluation = Evaluation(
                campaign_id=campaign_id,
                created_at=datetime.now(UTC),
                horizon_days=horizon_days,
                result=json.loads(json.dumps(result, default=str)),
                report_path=report_path,
                mlflow_run_id=mlflow_run_id,
            )
            session.add(evaluation)
            session.flush()
            return int(evaluation.id)


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # The writer lock is `BEGIN IMMEDIATE`: let SQLAlchemy leave transactions to us, and
        # wait for another writer rather than fail at once.
        engine = create_engine(url, connect_args={"timeout": 60, "isolation_level": None})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url
