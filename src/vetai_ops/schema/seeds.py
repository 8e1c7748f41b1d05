"""Demo data for VetAI Connect (first deploy of a sandbox / staging, RUN_SEEDS=1).

``seed_demo(connection)`` inserts a small, realistic clinic (users, veterinarians, clients,
their pets, appointments with records, AI diagnoses, prescriptions, vaccinations,
attachments and notifications) into a database at Alembic head. It is idempotent: when
``clients`` already has rows it does nothing and returns zero counts. Passwords of the demo
accounts are an unusable marker, not a hash: nobody can log in with them.

Transactions: when the connection has no transaction open, the seed runs in its own and
commits it; inside a caller's transaction it just runs (the caller commits or rolls back).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import Base

SEED_TABLES = (
    "users", "veterinarians", "clients", "pets", "appointments", "medical_records",
    "ai_diagnoses", "prescriptions", "vaccinations", "attachments", "notifications",
)
DEMO_PASSWORD = "!demo-account-no-login"


def _t(name: str) -> sa.Table:
    return Base.metadata.tables[name]


def is_empty(connection: Connection) -> bool:
    """True when the app holds no clinic data yet (no client rows)."""
    return connection.execute(sa.select(sa.func.count()).select_from(_t("clients"))).scalar_one() == 0


def _insert(connection: Connection, table: str, rows: list[dict]) -> list:
    # one statement per row: the rows do not all carry the same keys (omitted keys take
    # the server default), and the demo set is tiny
    t = _t(table)
    return [connection.execute(sa.insert(t).values(**row).returning(t.c.id)).scalar_one() for row in rows]


def seed_demo(connection: Connection) -> dict[str, int]:
    """Insert the demo clinic; returns rows inserted per table (all zero when already seeded)."""
    if connection.in_transaction():
        return _seed(connection)
    with connection.begin():
        return _seed(connection)


def _seed(connection: Connection) -> dict[str, int]:
    counts = {t: 0 for t in SEED_TABLES}
    if not is_empty(connection):
        return counts

    now = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    today = now.date()

    def at(days: int, hour: int) -> dt.datetime:
        return (now + dt.timedelta(days=days)).replace(hour=hour)

    users = _insert(connection, "users", [
        dict(email="admin@vetai.demo", password_hash=DEMO_PASSWORD, full_name="Lucía Fernández",
             phone="+34 600 100 200", role="admin"),
        dict(email="dra.ortega@vetai.demo", password_hash=DEMO_PASSWORD, full_name="Marta Ortega",
             phone="+34 600 300 400", role="veterinarian"),
        dict(email="carlos.ruiz@example.com", password_hash=DEMO_PASSWORD, full_name="Carlos Ruiz",
             phone=None, role="client"),
    ])
    admin, vet_user, client_user = users
    counts["users"] = len(users)

    vets = _insert(connection, "veterinarians", [
        dict(user_id=vet_user, first_name="Marta", last_name="Ortega", license_number="COV-28-4512",
             specialty="Medicina interna"),
        dict(user_id=None, first_name="Javier", last_name="Molina", license_number="COV-28-5120",
             specialty="Cirugía"),
    ])
    ortega, molina = vets
    counts["veterinarians"] = len(vets)

    clients = _insert(connection, "clients", [
        dict(user_id=client_user, first_name="Carlos", last_name="Ruiz", email="carlos.ruiz@example.com",
             phone="+34 611 222 333", address="Calle Mayor 12, Madrid"),
        dict(first_name="Ana", last_name="Gómez", email="ana.gomez@example.com", phone="+34 622 333 444",
             address="Av. de América 45, Madrid"),
        dict(first_name="Pedro", last_name="Sánchez", email=None, phone="+34 633 444 555",
             address="Calle Alcalá 200, Madrid"),
        dict(first_name="Laura", last_name="Martín", email="laura.martin@example.com", phone=None, address=None),
        dict(first_name="Sofía", last_name="López", email="sofia.lopez@example.com", phone="+34 644 555 666",
             address="Paseo de la Castellana 80, Madrid"),
    ])
    counts["clients"] = len(clients)

    def pet(ci, name, species, breed, sex, born, kg, chip=None, color=None, sterilized=False):
        return dict(client_id=clients[ci], name=name, species=species, breed=breed, sex=sex,
                    birth_date=dt.date(*born), weight_kg=Decimal(kg), microchip=chip, color=color,
                    sterilized=sterilized)

    pets = _insert(connection, "pets", [
        pet(0, "Luna", "dog", "Labrador Retriever", "female", (2019, 4, 12), "28.40", "941000024680135", "dorado", True),
        pet(0, "Michi", "cat", "Europeo común", "male", (2021, 9, 1), "4.60", "941000024680136", "atigrado", True),
        pet(1, "Rocky", "dog", "Bulldog francés", "male", (2020, 2, 20), "12.10", "941000024680137", "atigrado"),
        pet(2, "Nala", "cat", "Siamés", "female", (2018, 6, 5), "3.90", None, "crema", True),
        pet(2, "Kiwi", "bird", "Agapornis", "unknown", (2022, 3, 15), "0.05", None, "verde"),
        pet(3, "Toby", "dog", "Beagle", "male", (2017, 11, 30), "14.80", "941000024680140", "tricolor", True),
        pet(4, "Coco", "rabbit", "Belier", "female", (2023, 1, 10), "1.80", None, "blanco"),
        pet(4, "Max", "dog", "Pastor alemán", "male", (2016, 8, 22), "34.50", "941000024680142", "negro y fuego"),
    ])
    luna, michi, rocky, nala, kiwi, toby, coco, max_ = pets
    counts["pets"] = len(pets)

    def appt(p, v, when, status, reason, minutes=30, **kw):
        return dict(pet_id=p, veterinarian_id=v, scheduled_at=when, status=status, reason=reason,
                    duration_minutes=minutes, **kw)

    appts = _insert(connection, "appointments", [
        appt(luna, ortega, at(-30, 10), "completed", "Revisión anual y vacunas"),
        appt(michi, ortega, at(-21, 11), "completed", "Vómitos desde hace dos días"),
        appt(rocky, molina, at(-14, 9), "completed", "Dificultad respiratoria", 45),
        appt(toby, ortega, at(-10, 16), "completed", "Cojera pata trasera derecha"),
        appt(max_, molina, at(-7, 12), "completed", "Control post-operatorio", 20),
        appt(nala, ortega, at(-3, 17), "no_show", "Limpieza dental"),
        appt(coco, ortega, at(-2, 10), "cancelled", "Corte de uñas", 15,
             cancelled_at=at(-4, 9), cancellation_reason="El cliente está de viaje"),
        appt(luna, ortega, at(2, 10), "confirmed", "Seguimiento dermatitis"),
        appt(kiwi, molina, at(5, 13), "scheduled", "Revisión de plumaje", 20),
        appt(rocky, molina, at(9, 9), "scheduled", "Valoración cirugía braquicefálica", 60),
    ])
    counts["appointments"] = len(appts)

    records = _insert(connection, "medical_records", [
        dict(appointment_id=appts[0], pet_id=luna, veterinarian_id=ortega, visit_date=at(-30, 10),
             chief_complaint="Revisión anual", findings="Buen estado general; leve eritema interdigital.",
             diagnosis="Dermatitis interdigital leve", treatment="Clorhexidina tópica 7 días",
             weight_kg=Decimal("28.40"), temperature_c=Decimal("38.6")),
        dict(appointment_id=appts[1], pet_id=michi, veterinarian_id=ortega, visit_date=at(-21, 11),
             chief_complaint="Vómitos", findings="Deshidratación leve, abdomen sensible.",
             diagnosis="Gastritis aguda", treatment="Dieta blanda, maropitant 3 días, fluidoterapia",
             weight_kg=Decimal("4.50"), temperature_c=Decimal("39.1")),
        dict(appointment_id=appts[2], pet_id=rocky, veterinarian_id=molina, visit_date=at(-14, 9),
             chief_complaint="Disnea con el ejercicio", findings="Estenosis de narinas, paladar blando elongado.",
             diagnosis="Síndrome braquicefálico", treatment="Control de peso; valorar cirugía",
             weight_kg=Decimal("12.10"), temperature_c=Decimal("38.9")),
        dict(appointment_id=appts[3], pet_id=toby, veterinarian_id=ortega, visit_date=at(-10, 16),
             chief_complaint="Cojera", findings="Dolor a la extensión de rodilla derecha, cajón negativo.",
             diagnosis="Artrosis de rodilla", treatment="Meloxicam 14 días, condroprotector",
             weight_kg=Decimal("14.80"), temperature_c=Decimal("38.4")),
        dict(appointment_id=appts[4], pet_id=max_, veterinarian_id=molina, visit_date=at(-7, 12),
             chief_complaint="Control post-operatorio", findings="Herida limpia, sin signos de infección.",
             diagnosis="Evolución favorable", treatment="Retirada de puntos en 7 días",
             weight_kg=Decimal("34.20"), temperature_c=Decimal("38.5")),
    ])
    counts["medical_records"] = len(records)

    diagnoses = _insert(connection, "ai_diagnoses", [
        dict(pet_id=luna, appointment_id=appts[0], requested_by_id=vet_user, model="vetai-derm",
             model_version="2025.06", symptoms="Eritema y prurito interdigital", confidence=Decimal("0.8731"),
             result={"top": "dermatitis_interdigital",
                     "differentials": [["dermatitis_interdigital", 0.8731], ["atopia", 0.0912]]},
             reviewed=True),
        dict(pet_id=michi, appointment_id=appts[1], requested_by_id=vet_user, model="vetai-triage",
             model_version="2025.06", symptoms="Vómitos, apatía", confidence=Decimal("0.6420"),
             result={"top": "gastritis_aguda", "urgency": "media"}, reviewed=True),
        dict(pet_id=rocky, appointment_id=None, requested_by_id=client_user, model="vetai-triage",
             model_version="2025.06", symptoms="Ronquidos fuertes y jadeo", confidence=Decimal("0.9105"),
             result={"top": "sindrome_braquicefalico", "urgency": "baja"}, reviewed=False),
    ])
    counts["ai_diagnoses"] = len(diagnoses)

    prescriptions = _insert(connection, "prescriptions", [
        dict(medical_record_id=records[0], pet_id=luna, veterinarian_id=ortega, medication="Clorhexidina 2%",
             dosage="Aplicación tópica", frequency="Cada 12 horas", duration_days=7,
             start_date=(now - dt.timedelta(days=30)).date()),
        dict(medical_record_id=records[1], pet_id=michi, veterinarian_id=ortega, medication="Maropitant 16 mg",
             dosage="1/2 comprimido", frequency="Cada 24 horas", duration_days=3,
             start_date=(now - dt.timedelta(days=21)).date()),
        dict(medical_record_id=records[3], pet_id=toby, veterinarian_id=ortega, medication="Meloxicam 1.5 mg/ml",
             dosage="0.1 mg/kg", frequency="Cada 24 horas con comida", duration_days=14,
             instructions="Suspender si hay vómitos o heces oscuras", start_date=(now - dt.timedelta(days=10)).date()),
        dict(medical_record_id=records[4], pet_id=max_, veterinarian_id=molina, medication="Amoxicilina/clavulánico 500 mg",
             dosage="1 comprimido", frequency="Cada 12 horas", duration_days=5,
             start_date=(now - dt.timedelta(days=7)).date()),
    ])
    counts["prescriptions"] = len(prescriptions)

    def vacc(p, v, name, batch, days_ago, due_in_days):
        given = today - dt.timedelta(days=days_ago)
        return dict(pet_id=p, veterinarian_id=v, vaccine_name=name, batch_number=batch, administered_on=given,
                    next_due_on=given + dt.timedelta(days=due_in_days) if due_in_days else None)

    vaccinations = _insert(connection, "vaccinations", [
        vacc(luna, ortega, "Rabia", "RB-2291", 30, 365),
        vacc(luna, ortega, "Polivalente canina (DHPPi+L)", "DH-7710", 30, 365),
        vacc(michi, ortega, "Trivalente felina", "FT-1032", 200, 365),
        vacc(rocky, molina, "Rabia", "RB-2290", 340, 365),
        vacc(toby, ortega, "Leishmaniosis", "LS-5502", 350, 365),
        vacc(coco, ortega, "Mixomatosis y VHD", "MX-0451", 150, 180),
    ])
    counts["vaccinations"] = len(vaccinations)

    attachments = _insert(connection, "attachments", [
        dict(pet_id=luna, appointment_id=appts[0], medical_record_id=records[0], uploaded_by_id=vet_user,
             file_name="luna-pata-izquierda.jpg", content_type="image/jpeg", size_bytes=482113,
             storage_key="demo/pets/luna/luna-pata-izquierda.jpg"),
        dict(pet_id=rocky, appointment_id=appts[2], medical_record_id=records[2], uploaded_by_id=vet_user,
             file_name="rocky-rx-torax.png", content_type="image/png", size_bytes=1203345,
             storage_key="demo/pets/rocky/rocky-rx-torax.png"),
    ])
    counts["attachments"] = len(attachments)

    notifications = _insert(connection, "notifications", [
        dict(user_id=client_user, appointment_id=appts[7], channel="email", type="appointment_reminder",
             title="Recordatorio de cita", body="Luna tiene cita con la Dra. Ortega en 2 días a las 10:00.",
             payload={"pet": "Luna"}, scheduled_for=at(1, 10), sent_at=None),
        dict(user_id=client_user, appointment_id=None, channel="push", type="vaccination_due",
             title="Vacuna próxima", body="La vacuna de Rabia de Luna vence en 11 meses.",
             scheduled_for=at(-29, 9), sent_at=at(-29, 9), read_at=at(-28, 20)),
        dict(user_id=vet_user, appointment_id=appts[8], channel="in_app", type="appointment_booked",
             title="Nueva cita", body="Kiwi (Agapornis) reservado para revisión de plumaje.",
             sent_at=at(-1, 12)),
        dict(user_id=admin, appointment_id=None, channel="in_app", type="ai_review_pending",
             title="Diagnóstico IA pendiente de revisión", body="Hay 1 diagnóstico de IA sin revisar.",
             payload={"pending": 1}, sent_at=at(-1, 8)),
    ])
    counts["notifications"] = len(notifications)
    return counts
