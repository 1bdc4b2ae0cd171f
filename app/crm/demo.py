"""The demo book: a deterministic, realistic CRM (Russian companies and people, some English ones) written
through the one write path (``records.create_many``), so history lines and derived fields are exactly those
of records people make.

Every record is created by its owner (``Actor.of_user``): staff own most of the book, managers some; the
reference tables (pipelines, stages, products) belong to the admin. Counts are those of ``COUNTS`` times the
scale (at least one each). The same seed and the same day give the same book; dates are relative to today
so that overdue tasks and invoices stay overdue-looking whenever the demo is loaded.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flask_appbuilder.security.sqla.models import User
from sqlalchemy import select

from app.crm.derive import DAY, cents, elapsed
from app.extensions import db
from custom_fields import records, runtime
from custom_fields.access import Actor
from custom_fields.query import TableQuery
from models.teams import Team

SEED = 20_250_101
#: Records per table at scale 1.0 (pipelines and stages are fixed).
COUNTS: dict[str, int] = {
    "companies": 2000,
    "contacts": 5000,
    "leads": 200,
    "products": 30,
    "deals": 3000,
    "activities": 20000,
    "tasks": 1000,
    "invoices": 2000,
}
#: Tables whose rows mean "this database already holds a CRM" (pipelines and stages are seeded by init).
BOOK_TABLES = ("companies", "contacts", "leads", "deals", "activities", "tasks", "invoices")
CHUNK = 2000  # rows per create_many call (one transaction each)
SOURCE = "import"
#: Why the demo book reads tables whole, and links records across owners (the named system paths).
REASON = "demo book"

TEAMS: dict[str, tuple[str, ...]] = {
    "Отдел продаж — Москва": ("manager", "staff1", "staff2", "staff3"),
    "Отдел продаж — Санкт-Петербург": ("manager2", "staff4", "staff5"),
}
#: Who owns how much of the book (weights): staff most, managers some.
OWNER_WEIGHTS: dict[str, int] = {
    "staff1": 18, "staff2": 17, "staff3": 16, "staff4": 17, "staff5": 16, "manager": 8, "manager2": 8,
}  # fmt: skip

# (name, position, probability, is_won, is_lost)
PIPELINES: dict[str, list[tuple[str, int, int, bool, bool]]] = {
    "Продажи": [
        ("Новая заявка", 1, 10, False, False),
        ("Квалификация", 2, 20, False, False),
        ("Коммерческое предложение", 3, 40, False, False),
        ("Переговоры", 4, 60, False, False),
        ("Согласование договора", 5, 80, False, False),
        ("Успешно реализовано", 6, 100, True, False),
        ("Закрыто и не реализовано", 7, 0, False, True),
    ],
    "Тендеры": [
        ("Анализ закупки", 1, 10, False, False),
        ("Подготовка заявки", 2, 30, False, False),
        ("Заявка подана", 3, 50, False, False),
        ("Рассмотрение", 4, 70, False, False),
        ("Контракт заключён", 5, 100, True, False),
        ("Тендер проигран", 6, 0, False, True),
    ],
}
DEFAULT_STAGES = {
    "ru": (
        "Продажи",
        [
            ("Новая заявка", 1, 10, False, False),
            ("Квалификация", 2, 20, False, False),
            ("Предложение", 3, 50, False, False),
            ("Переговоры", 4, 70, False, False),
            ("Выиграна", 5, 100, True, False),
            ("Проиграна", 6, 0, False, True),
        ],
    ),
    "en": (
        "Sales",
        [
            ("New", 1, 10, False, False),
            ("Qualification", 2, 20, False, False),
            ("Proposal", 3, 50, False, False),
            ("Negotiation", 4, 70, False, False),
            ("Won", 5, 100, True, False),
            ("Lost", 6, 0, False, True),
        ],
    ),
}

# --- word lists --------------------------------------------------------------------------------------------

MALE_FIRST = (
    "Александр Алексей Андрей Антон Артём Борис Вадим Валерий Василий Виктор Виталий Владимир Вячеслав "
    "Георгий Григорий Денис Дмитрий Евгений Егор Иван Игорь Илья Кирилл Константин Леонид Максим Михаил "
    "Никита Николай Олег Павел Пётр Роман Руслан Сергей Станислав Степан Тимур Фёдор Юрий Ярослав"
).split()
FEMALE_FIRST = (
    "Александра Алёна Алина Анастасия Анна Валентина Валерия Вера Виктория Галина Дарья Евгения Екатерина "
    "Елена Елизавета Жанна Зоя Инна Ирина Карина Кристина Ксения Лариса Любовь Людмила Маргарита Марина "
    "Мария Надежда Наталья Нина Оксана Ольга Полина Светлана София Татьяна Ульяна Юлия Яна"
).split()
# Fathers' names -> (male, female) patronymics
PATRONYMICS = [
    ("Александрович", "Александровна"), ("Алексеевич", "Алексеевна"), ("Андреевич", "Андреевна"),
    ("Борисович", "Борисовна"), ("Викторович", "Викторовна"), ("Владимирович", "Владимировна"),
    ("Геннадьевич", "Геннадьевна"), ("Дмитриевич", "Дмитриевна"), ("Евгеньевич", "Евгеньевна"),
    ("Иванович", "Ивановна"), ("Игоревич", "Игоревна"), ("Константинович", "Константиновна"),
    ("Михайлович", "Михайловна"), ("Николаевич", "Николаевна"), ("Олегович", "Олеговна"),
    ("Павлович", "Павловна"), ("Петрович", "Петровна"), ("Сергеевич", "Сергеевна"),
    ("Юрьевич", "Юрьевна"), ("Васильевич", "Васильевна"),
]  # fmt: skip
# Male last names; the female form adds "а" (Иванов -> Иванова, Белый is not used on purpose).
LAST_NAMES = (
    "Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров Морозов Волков "
    "Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев Орлов Андреев Макаров Никитин "
    "Захаров Зайцев Соловьёв Борисов Яковлев Григорьев Романов Воробьёв Сергеев Кузьмин Фролов "
    "Александров Дмитриев Королёв Гусев Киселёв Ильин Максимов Поляков Сорокин Виноградов Ковалёв "
    "Белов Медведев Антонов Тарасов Жуков Баранов Филиппов Комаров Давыдов Беляев Герасимов Богданов "
    "Осипов Сидоров Матвеев Титов Марков Миронов Крылов Куликов Карпов Власов Мельников Денисов Гаврилов "
    "Тихонов Казаков Афанасьев Данилов Савельев Тимофеев Фомин Чернов Абрамов Мартынов Ефимов Федотов "
    "Щербаков Назаров Калинин Исаев Чернышёв Быков Маслов Родионов Коновалов Лазарев Воронин Климов "
    "Филатов Пономарёв Голубев Кудрявцев Прохоров Наумов Потапов Журавлёв Овчинников Трофимов Леонов"
).split()
ENGLISH_FIRST = (
    "James John Robert Michael David Emma Olivia Sophia Laura Sarah Peter Thomas Anna Mark".split()
)
ENGLISH_LAST = (
    "Smith Johnson Brown Taylor Miller Wilson Moore Clark Walker Hall Young King Wright Green".split()
)

NAME_ROOTS = (
    "Альфа Вектор Гранит Дельта Интер Капитал Лидер Меридиан Норд Орион Прайм Регион Сигма Спектр Старт "
    "Стандарт Сфера Техно Транс Триада Урал Феникс Форум Эталон Юнити Атлант Байкал Волга Восток Горизонт "
    "Зенит Империал Континент Магистраль Монолит Олимп Пересвет Полюс Ресурс Север Сибирь Союз Терра "
    "Уралсиб Фаворит Эверест Янтарь Аврора Арсенал Бастион Вершина Галактика Держава Енисей Ладога Кедр"
).split()
NAME_SUFFIXES = (
    "Строй Трейд Логистик Пром Снаб Сервис Групп Инвест Техника Торг Маркет Консалт Энерго Агро Мед Софт "
    "Проект Девелопмент Металл Пласт Авто Лес Хим Телеком Фарм Экспорт Систем Плюс"
).split()
ENGLISH_ROOTS = "Northwind Bluewave Silverline Greenfield Brightstar Ironbridge Oakridge Redstone".split()
ENGLISH_KINDS = "Trading Systems Logistics Solutions Industries Technologies Consulting Partners".split()
ENGLISH_FORMS = "Ltd LLC GmbH Inc. B.V. S.A.".split()
TRANSLIT = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya".split(),
        strict=True,
    )
)
# (region, city, phone area code)
REGIONS = [
    ("Москва", "Москва", "495"), ("Москва", "Москва", "499"), ("Санкт-Петербург", "Санкт-Петербург", "812"),
    ("Московская область", "Подольск", "496"), ("Ленинградская область", "Гатчина", "813"),
    ("Свердловская область", "Екатеринбург", "343"), ("Новосибирская область", "Новосибирск", "383"),
    ("Республика Татарстан", "Казань", "843"), ("Нижегородская область", "Нижний Новгород", "831"),
    ("Самарская область", "Самара", "846"), ("Ростовская область", "Ростов-на-Дону", "863"),
    ("Краснодарский край", "Краснодар", "861"), ("Челябинская область", "Челябинск", "351"),
    ("Пермский край", "Пермь", "342"), ("Воронежская область", "Воронеж", "473"),
    ("Красноярский край", "Красноярск", "391"), ("Республика Башкортостан", "Уфа", "347"),
    ("Омская область", "Омск", "381"), ("Тюменская область", "Тюмень", "345"),
    ("Приморский край", "Владивосток", "423"), ("Иркутская область", "Иркутск", "395"),
    ("Ярославская область", "Ярославль", "485"), ("Калининградская область", "Калининград", "401"),
    ("Хабаровский край", "Хабаровск", "421"),
]  # fmt: skip
REGION_WEIGHTS = [14, 6, 14, 6, 3] + [3] * (len(REGIONS) - 5)
STREETS = (
    "Ленина",
    "Мира",
    "Советская",
    "Гагарина",
    "Садовая",
    "Лесная",
    "Школьная",
    "Пушкина",
    "Заводская",
    "Октябрьская",
    "Промышленная",
    "Кирова",
    "Набережная",
    "Победы",
    "Тверская",
    "Профсоюзная",
)
POSITIONS = (
    "Генеральный директор", "Коммерческий директор", "Главный бухгалтер", "Менеджер по закупкам",
    "Руководитель отдела закупок", "Финансовый директор", "Технический директор", "Начальник склада",
    "Юрист", "Офис-менеджер", "Специалист по снабжению", "ИТ-директор", "Главный инженер",
    "Руководитель проекта", "Маркетолог",
)  # fmt: skip
ENGLISH_POSITIONS = ("CEO", "Procurement Manager", "CFO", "Head of IT", "Sales Director", "Office Manager")
# (name, unit, price in RUB)
PRODUCTS = [
    ("Табула CRM — лицензия «Стандарт» (1 пользователь, год)", "лиц.", 12_000),
    ("Табула CRM — лицензия «Профи» (1 пользователь, год)", "лиц.", 24_000),
    ("Табула CRM — лицензия «Корпорация» (1 пользователь, год)", "лиц.", 36_000),
    ("Внедрение CRM (пакет «Старт»)", "компл.", 90_000),
    ("Внедрение CRM (пакет «Бизнес»)", "компл.", 250_000),
    ("Настройка интеграции с 1С", "компл.", 120_000),
    ("Интеграция с телефонией", "компл.", 45_000),
    ("Обучение пользователей (группа до 10 человек)", "день", 35_000),
    ("Консультация аналитика", "час", 3_500),
    ("Доработка по техническому заданию", "час", 4_200),
    ("Техническая поддержка «Базовая»", "мес.", 15_000),
    ("Техническая поддержка «Расширенная»", "мес.", 40_000),
    ("Миграция данных из другой системы", "компл.", 60_000),
    ("Сервер HPE ProLiant DL380 Gen10", "шт.", 780_000),
    ("Ноутбук Lenovo ThinkPad E15", "шт.", 89_900),
    ('Монитор Dell P2422H 24"', "шт.", 21_500),
    ("МФУ Kyocera ECOSYS M2540dn", "шт.", 42_300),
    ("ИБП APC Smart-UPS 1500", "шт.", 67_800),
    ("Коммутатор Cisco Catalyst 2960", "шт.", 95_000),
    ("IP-телефон Yealink T46U", "шт.", 14_900),
    ("Гарнитура Jabra Evolve2 40", "шт.", 9_800),
    ("Картридж TK-1170", "шт.", 4_600),
    ("Бумага офисная А4 «СветоКопи» (500 л.)", "пачка", 390),
    ("Кресло офисное «Бюрократ»", "шт.", 12_700),
    ("Стол письменный 1400×700", "шт.", 15_400),
    ("Облачное хранилище 1 ТБ", "мес.", 2_900),
    ("Резервное копирование (1 сервер)", "мес.", 5_500),
    ("Аудит информационной безопасности", "компл.", 180_000),
    ("Выезд инженера", "выезд", 6_500),
    ("Антивирус Kaspersky Endpoint Security (1 ПК, год)", "лиц.", 2_450),
]
LOST_REASONS = (  # (why lost, details)
    ("competitor", "Выбрали конкурента"), ("price", "Дорого"), ("budget", "Нет бюджета в этом году"),
    ("timing", "Проект отложен"), ("competitor", "Не прошли тендер"), ("needs", "Не устроили сроки поставки"),
    ("silence", "Клиент перестал выходить на связь"), ("other", "Решили делать своими силами"),
)  # fmt: skip
CALL_SUBJECTS = (
    "Первичный звонок", "Уточнение потребности", "Обсуждение КП", "Согласование цены",
    "Напоминание об оплате", "Повторный звонок", "Уточнение реквизитов", "Звонок по рекламации",
)  # fmt: skip
EMAIL_SUBJECTS = (
    "Коммерческое предложение", "Счёт на оплату", "Договор на согласование", "Акт сверки",
    "Приглашение на вебинар", "Спецификация к договору", "Re: уточнение по заказу",
)  # fmt: skip
MEETING_SUBJECTS = (
    "Встреча в офисе клиента",
    "Презентация решения",
    "Демонстрация системы",
    "Подписание договора",
)
NOTE_SUBJECTS = ("Заметка по клиенту", "Итоги переговоров", "Контактное лицо в отпуске", "Важно: смена ЛПР")
SMS_SUBJECTS = ("Напоминание о встрече", "Код доступа к демо", "Счёт отправлен на почту")
COMPLAINTS = {
    "quality": ("Брак в поставке", "Не работает функция экспорта"),
    "delivery": ("Задержка поставки", "Доставили не тот товар"),
    "billing": ("Ошибка в счёте", "Двойное списание"),
    "service": ("Долго отвечает поддержка", "Некорректная работа инженера"),
    "other": ("Претензия по договору", "Жалоба на менеджера"),
}
TASK_TITLES = (
    "Перезвонить клиенту", "Отправить коммерческое предложение", "Подготовить договор", "Выставить счёт",
    "Согласовать спецификацию", "Назначить встречу", "Проверить оплату", "Отправить акт сверки",
    "Подготовить презентацию", "Уточнить реквизиты", "Собрать обратную связь", "Продлить лицензии",
)  # fmt: skip
LEAD_TITLES = (
    "Заявка с сайта: расчёт стоимости", "Запрос демо-доступа", "Звонок: интересует внедрение",
    "Заявка с выставки", "Запрос КП по e-mail", "Рекомендация партнёра", "Заявка на обучение",
)  # fmt: skip
FREE_MAIL = ("mail.ru", "yandex.ru")
PRIORITIES = ("low", "normal", "high", "urgent")
CONSENT_SOURCES = ("веб-форма", "договор", "устное согласие", "анкета на выставке")


# --- small generators --------------------------------------------------------------------------------------


def _translit(text: str) -> str:
    out = []
    for char in text.lower():
        if char in TRANSLIT:
            out.append("" if TRANSLIT[char] == "-" else TRANSLIT[char])
        elif char.isascii() and char.isalnum():
            out.append(char)
        elif char in " -":
            out.append("-")
    return "".join(out).strip("-").replace("--", "-")


def _inn(rng: random.Random, digits: int) -> str:
    """A tax id with valid check digits: 10 for an organisation, 12 for an individual entrepreneur."""

    def check(nums: list[int], weights: tuple[int, ...]) -> int:
        return sum(n * w for n, w in zip(nums, weights, strict=False)) % 11 % 10

    region = rng.choice((77, 78, 50, 47, 66, 54, 16, 52, 63, 61, 23, 74))
    nums = [region // 10, region % 10] + [rng.randrange(10) for _ in range(digits - 3 if digits == 10 else 8)]
    if digits == 10:
        nums.append(check(nums, (2, 4, 10, 3, 5, 9, 4, 6, 8)))
    else:
        nums.append(check(nums, (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)))
        nums.append(check(nums, (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)))
    return "".join(map(str, nums))


def _phone(rng: random.Random, code: str | None = None) -> str:
    code = code or rng.choice(("903", "905", "909", "915", "916", "921", "925", "926", "977", "985", "999"))
    return f"+7 ({code}) {rng.randrange(100, 1000)}-{rng.randrange(10, 100)}-{rng.randrange(10, 100)}"


@dataclass
class Person:
    first: str
    middle: str | None
    last: str
    female: bool


def _person(rng: random.Random, english: bool = False) -> Person:
    if english:
        return Person(rng.choice(ENGLISH_FIRST), None, rng.choice(ENGLISH_LAST), False)
    female = rng.random() < 0.45
    last = rng.choice(LAST_NAMES)
    male_middle, female_middle = rng.choice(PATRONYMICS)
    if female:
        return Person(rng.choice(FEMALE_FIRST), female_middle, last + "а", True)
    return Person(rng.choice(MALE_FIRST), male_middle, last, False)


def _money(value: float | int) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _line_total(quantity: Decimal, price: Decimal, discount: Decimal) -> Decimal:
    """As ``app.crm.derive.deal_lines`` computes it."""
    return cents(quantity * price * (Decimal(100) - discount) / Decimal(100))


def _at(day: dt.date, rng: random.Random) -> dt.datetime:
    """A working-hours moment of ``day`` in Moscow time (UTC+3)."""
    local = dt.datetime.combine(day, dt.time(rng.randrange(9, 19), rng.choice((0, 10, 15, 20, 30, 40, 45))))
    return local.replace(tzinfo=dt.timezone(dt.timedelta(hours=3)))


# --- loading -----------------------------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]


@dataclass
class DemoResult:
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time: the cost without other load on the machine


def scaled_counts(scale: float) -> dict[str, int]:
    return {slug: max(1, round(count * scale)) for slug, count in COUNTS.items()}


def has_book() -> bool:
    """Whether the CRM already holds data (companies, contacts, deals ...), deleted or not."""
    runtime.refresh()
    return any(_holds_rows(slug) for slug in BOOK_TABLES)


def _holds_rows(slug: str) -> bool:
    """Whether the table holds any row, in the recycle bin or not (the named system read)."""
    query = TableQuery.system(slug, REASON).fields()
    return bool(query.page(1).rows or query.binned(1))


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Loader:
    def __init__(self, actors: dict[str, Actor], progress: Progress | None) -> None:
        self.actors = actors
        self.progress = progress
        self.result = DemoResult()

    def update(self, slug: str, items: list[tuple[str, int, dict[str, Any]]]) -> None:
        """Change ``(owner username, id, values)`` records, each owner's as that owner (as they would)."""
        by_owner: dict[str, list[tuple[int, dict[str, Any], None]]] = {}
        for owner, record_id, values in items:
            by_owner.setdefault(owner, []).append((record_id, values, None))
        for owner, changes in by_owner.items():
            for chunk in _chunks(changes, CHUNK):
                with records.linking_unreadable(REASON):
                    records.update_many(slug, chunk, self.actors[owner])

    def insert(self, slug: str, items: list[tuple[str, dict[str, Any]]]) -> list[int]:
        """Create ``(owner username, values)`` rows, each owner's as that owner; ids in the items' order."""
        ids = [0] * len(items)
        by_owner: dict[str, list[int]] = {}
        for i, (owner, _values) in enumerate(items):
            by_owner.setdefault(owner, []).append(i)
        done = 0
        for owner, indexes in by_owner.items():
            for chunk in _chunks(indexes, CHUNK):
                # The book links each owner's records to others' (a shared company): seeding decides that.
                with records.linking_unreadable(REASON):
                    saved = records.create_many(slug, [items[i][1] for i in chunk], self.actors[owner])
                for i, record in zip(chunk, saved, strict=True):
                    ids[i] = record.id
                done += len(chunk)
                if self.progress is not None:
                    self.progress(slug, done, len(items))
        self.result.counts[slug] = self.result.counts.get(slug, 0) + len(items)
        return ids


def ensure_default_pipeline(locale: str, actor: Actor | None = None) -> bool:
    """A fresh install gets one pipeline with sensible stages (so deals can be created); nothing happens
    when any pipeline exists, even in the recycle bin. Returns whether one was created."""
    runtime.refresh()
    if _holds_rows("pipelines"):
        return False
    name, stages = DEFAULT_STAGES["ru" if locale == "ru" else "en"]
    _create_pipeline(name, 1, stages, actor or Actor.system_job(), None)
    return True


def _create_pipeline(
    name: str,
    position: int,
    stages: list[tuple[str, int, int, bool, bool]],
    actor: Actor,
    loader: _Loader | None,
) -> tuple[int, list[tuple[int, bool, bool]]]:
    if loader is not None:
        (pipeline_id,) = loader.insert("pipelines", [("admin", {"name": name, "position": position})])
        rows = [
            ("admin", {"name": s, "pipeline_id": pipeline_id, "position": p, "probability": pr,
                       "is_won": w, "is_lost": lost})
            for s, p, pr, w, lost in stages
        ]  # fmt: skip
        stage_ids = loader.insert("stages", rows)
    else:
        pipeline_id = records.create("pipelines", {"name": name, "position": position}, actor).id
        saved = records.create_many(
            "stages",
            [
                {"name": s, "pipeline_id": pipeline_id, "position": p, "probability": pr,
                 "is_won": w, "is_lost": lost}
                for s, p, pr, w, lost in stages
            ],
            actor,
        )  # fmt: skip
        stage_ids = [s.id for s in saved]
    return pipeline_id, [(sid, s[3], s[4]) for sid, s in zip(stage_ids, stages, strict=True)]


def ensure_teams(user_ids: dict[str, int]) -> None:
    """The demo's two sales teams (created once; members added when missing); bumps the schema version so
    every process sees the new team scopes."""
    from custom_fields.service import bump_schema_version

    changed = False
    for name, members in TEAMS.items():
        team = db.session.scalar(select(Team).where(Team.name == name))
        if team is None:
            team = Team(name=name)
            db.session.add(team)
            changed = True
        have = {u.id for u in team.members}
        for username in members:
            if username in user_ids and user_ids[username] not in have:
                team.members.append(db.session.get(User, user_ids[username]))
                changed = True
    if changed:
        db.session.flush()
        bump_schema_version(None, "access", "Demo teams", None, None)
    db.session.commit()
    runtime.refresh()


def load_book(
    scale: float, user_ids: dict[str, int], *, admin_id: int | None, progress: Progress | None = None
) -> DemoResult:
    """Write the demo book for ``scale`` (users and teams must exist: ``user_ids`` by username), in one
    transaction: one commit instead of one per batch, and a failure leaves no half-loaded book."""
    started, cpu_started = time.monotonic(), time.process_time()
    with records.atomic():
        result = _write_book(scale, user_ids, admin_id=admin_id, progress=progress)
    result.seconds = time.monotonic() - started
    result.cpu_seconds = time.process_time() - cpu_started
    return result


def _write_book(
    scale: float, user_ids: dict[str, int], *, admin_id: int | None, progress: Progress | None
) -> DemoResult:
    runtime.refresh()
    rng = random.Random(SEED)
    counts = scaled_counts(scale)
    users = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(user_ids.values())))}
    actors = {name: Actor.of_user(users[uid], SOURCE) for name, uid in user_ids.items()}
    admin = db.session.get(User, admin_id) if admin_id is not None else None
    actors["admin"] = Actor.of_user(admin, SOURCE) if admin is not None else Actor.system_job()
    loader = _Loader(actors, progress)
    today = dt.date.today()
    owners = [o for o in OWNER_WEIGHTS if o in user_ids]
    weights = [OWNER_WEIGHTS[o] for o in owners]
    team_of = {member: name for name, members in TEAMS.items() for member in members}

    # Pipelines and stages: reuse a pipeline of the same name (e.g. the one `init` seeded).
    pipelines: list[list[tuple[int, bool, bool]]] = []
    for position, (name, stages) in enumerate(PIPELINES.items(), start=1):
        named = TableQuery.system("pipelines", REASON).where({"field": "name", "op": "eq", "value": name})
        existing = named.fields().order_by("id").page(1).rows
        if existing:
            found = (
                TableQuery.system("stages", REASON)
                .where({"field": "pipeline_id", "op": "eq", "value": existing[0]["id"]})
                .fields("is_won", "is_lost")
                .order_by("position")
                .stream(500)
            )
            pipelines.append([(r["id"], bool(r["is_won"]), bool(r["is_lost"])) for r in found])
        else:
            pipelines.append(_create_pipeline(name, position, stages, actors["admin"], loader)[1])

    # Products (the price list belongs to the admin).
    product_rows = []
    product_prices: list[Decimal] = []
    for i in range(counts["products"]):
        name, unit, price = PRODUCTS[i % len(PRODUCTS)]
        if i >= len(PRODUCTS):
            name = f"{name} (вариант {i // len(PRODUCTS) + 1})"
        product_prices.append(_money(price))
        product_rows.append(
            ("admin", {"name": name, "sku": f"TBL-{i + 1:04d}", "unit": unit, "price": _money(price),
                       "currency": "rub", "active": i % 13 != 12,
                       "description": f"{name}. Цена указана с НДС."})
        )  # fmt: skip
    product_ids = loader.insert("products", product_rows)

    # Companies.
    company_rows = []
    company_meta: list[tuple[str, str, bool]] = []  # owner, domain, english
    for i in range(counts["companies"]):
        owner = rng.choices(owners, weights)[0]
        region, city, code = rng.choices(REGIONS, REGION_WEIGHTS)[0]
        form = rng.random()
        english = form >= 0.9
        if form < 0.55:
            root = f"{rng.choice(NAME_ROOTS)}{rng.choice(NAME_SUFFIXES).lower()}"
            name, tax_id, prefix = f"ООО «{root}»", _inn(rng, 10), root
        elif form < 0.7:
            root = f"{rng.choice(NAME_ROOTS)}-{rng.choice(NAME_SUFFIXES)}"
            name, tax_id, prefix = f"АО «{root}»", _inn(rng, 10), root
        elif form < 0.9:
            person = _person(rng)
            name = f"ИП {person.last} {person.first[0]}.{person.middle[0] if person.middle else ''}."
            tax_id, prefix = _inn(rng, 12), person.last
        else:
            root = f"{rng.choice(ENGLISH_ROOTS)} {rng.choice(ENGLISH_KINDS)}"
            name, tax_id, prefix = f"{root} {rng.choice(ENGLISH_FORMS)}", None, root
        domain = f"{_translit(prefix)}{i + 1}.{'com' if english else rng.choice(('ru', 'ru', 'рф', 'su'))}"
        if domain.endswith(".рф"):
            domain = domain[:-3] + ".ru"  # keep addresses ASCII for mail servers
        company_meta.append((owner, domain, english))
        tags = [t for t, p in (("vip", 0.05), ("key", 0.1), ("new", 0.15), ("at_risk", 0.06),
                               ("dormant", 0.08)) if rng.random() < p]  # fmt: skip
        company_rows.append(
            (owner, {
                "name": name,
                "kind": rng.choices(("customer", "supplier", "partner", "competitor", "other"),
                                    (70, 10, 10, 4, 6))[0],
                "tax_id": tax_id,
                "is_foreign": english,
                "industry": rng.choice(("retail", "wholesale", "manufacturing", "construction", "it",
                                        "services", "logistics", "finance", "public", "other")),
                "region": "London" if english and rng.random() < 0.5 else region,
                "email": f"{rng.choice(('info', 'office', 'sales', 'zakaz'))}@{domain}",
                "phone": _phone(rng, code),
                "phone2": _phone(rng, code) if rng.random() < 0.2 else None,
                "website": f"https://{domain}" if rng.random() < 0.7 else None,
                "address": f"{city}, ул. {rng.choice(STREETS)}, д. {rng.randrange(1, 150)}"
                + (f", офис {rng.randrange(1, 900)}" if rng.random() < 0.6 else ""),
                "tags": tags or None,
                "notes": "Работают по предоплате." if rng.random() < 0.05 else None,
            })
        )  # fmt: skip
    company_ids = loader.insert("companies", company_rows)
    n_companies = len(company_ids)

    # Contacts: every company gets one first, the rest at random.
    contact_rows = []
    contact_company: list[int] = []
    for i in range(counts["contacts"]):
        ci = i if i < n_companies else rng.randrange(n_companies)
        owner, domain, english = company_meta[ci]
        person = _person(rng, english)
        login = f"{_translit(person.first)}.{_translit(person.last)}"
        email_consent = rng.choices((True, False, None), (55, 15, 30))[0]
        sms_consent = rng.choices((True, False, None), (35, 15, 50))[0]
        contact_company.append(ci)
        contact_rows.append(
            (owner, {
                "first_name": person.first, "middle_name": person.middle, "last_name": person.last,
                "company_id": company_ids[ci],
                "position": rng.choice(ENGLISH_POSITIONS if english else POSITIONS),
                "email": f"{login}@{domain}" if rng.random() < 0.85 else None,
                "email2": f"{login}{rng.randrange(1, 99)}@{rng.choice(('mail.ru', 'yandex.ru', 'gmail.com'))}"
                if rng.random() < 0.15 else None,
                "phone": _phone(rng, company_rows[ci][1]["phone"][4:7]) if rng.random() < 0.6 else None,
                "mobile": _phone(rng) if rng.random() < 0.8 else None,
                "birthday": dt.date(rng.randrange(1960, 2001), rng.randrange(1, 13), rng.randrange(1, 29))
                if rng.random() < 0.4 else None,
                "preferred_channel": rng.choice(("phone", "email", "sms", "messenger", "meeting", None)),
                "email_consent": email_consent,
                "email_consent_source": rng.choice(CONSENT_SOURCES) if email_consent else None,
                "sms_consent": sms_consent,
                "sms_consent_source": rng.choice(CONSENT_SOURCES) if sms_consent else None,
            })
        )  # fmt: skip
    contact_ids = loader.insert("contacts", contact_rows)
    contacts_of: dict[int, list[int]] = {}
    for i, ci in enumerate(contact_company):
        contacts_of.setdefault(ci, []).append(i)

    def _contact_of(ci: int) -> int | None:
        return contact_ids[rng.choice(contacts_of[ci])] if ci in contacts_of else None

    # Leads: most new or in progress; converted ones point at their company and contact.
    lead_rows = []
    for _ in range(counts["leads"]):
        owner = rng.choices(owners, weights)[0]
        status = rng.choices(("new", "in_progress", "converted", "rejected"), (40, 30, 20, 10))[0]
        person = _person(rng)
        values: dict[str, Any] = {
            "title": rng.choice(LEAD_TITLES), "source": rng.choice(("web_form", "call", "email", "referral",
                                                                    "exhibition", "manual")),
            "status": status, "contact_name": f"{person.first} {person.last}",
            "email": f"{_translit(person.first)}.{_translit(person.last)}@{rng.choice(FREE_MAIL)}",
            "phone": _phone(rng), "message": "Прошу связаться и рассказать об условиях.",
        }  # fmt: skip
        if status == "converted":
            ci = rng.randrange(n_companies)
            owner = company_meta[ci][0]
            values.update(
                company_name=company_rows[ci][1]["name"], tax_id=company_rows[ci][1]["tax_id"],
                company_id=company_ids[ci], contact_id=_contact_of(ci),
            )  # fmt: skip
        else:
            values.update(company_name=f"ООО «{rng.choice(NAME_ROOTS)}{rng.choice(NAME_SUFFIXES).lower()}»",
                          tax_id=_inn(rng, 10) if rng.random() < 0.4 else None)  # fmt: skip
        lead_rows.append((owner, values))
    lead_ids = loader.insert("leads", lead_rows)
    # Leads came in over the last four months (seeding decides when), and most got a first call some hours
    # later: what the first response report measures.
    arrived = {  # three days back at least: every first call below is in the past
        lead_id: _at(today - dt.timedelta(days=rng.randrange(3, 120)), rng).astimezone(dt.UTC)
        for lead_id in lead_ids
    }
    records.store_calendar_values(
        "leads", {i: {"created_at": at} for i, at in arrived.items()}, "the demo's leads came in over months"
    )
    first_calls = []
    for (owner, values), lead_id in zip(lead_rows, lead_ids, strict=True):
        if values["status"] == "new":
            continue  # nobody has answered it yet
        answered = arrived[lead_id] + dt.timedelta(minutes=rng.choice((10, 25, 40, 90, 180, 300, 1200, 2900)))
        first_calls.append(
            (owner, {
                "kind": "call", "direction": "outbound", "lead_id": lead_id,
                "outcome": rng.choices(("done", "no_answer"), (75, 25))[0],
                "occurred_at": answered, "subject": "Первичный звонок по заявке",
            })
        )  # fmt: skip

    # Deals across every stage; part of them with lines (then the amount is the lines' sum).
    deal_rows = []
    lost_later: list[tuple[int, int]] = []  # (deal row, its lost stage)
    deal_lines: list[list[dict[str, Any]]] = []
    deal_meta: list[tuple[int, bool, Decimal]] = []  # company index, won, amount
    for _ in range(counts["deals"]):
        ci = rng.randrange(n_companies)
        owner = company_meta[ci][0]
        stages = pipelines[0] if rng.random() < 0.8 or len(pipelines) < 2 else pipelines[1]
        open_stages = [s for s in stages if not s[1] and not s[2]] or stages
        won = [s for s in stages if s[1]] or stages
        lost = [s for s in stages if s[2]] or stages
        bucket = rng.choices((open_stages, won, lost), (60, 25, 15))[0]
        stage_id, is_won, is_lost = rng.choice(bucket)
        if is_lost and open_stages is not stages:  # a deal is lost after getting somewhere: moved there below
            lost_later.append((len(deal_rows), stage_id))
            stage_id = rng.choice(open_stages)[0]
        lines: list[dict[str, Any]] = []
        if rng.random() < 0.4:
            for pi in rng.sample(range(len(product_ids)), min(len(product_ids), rng.randrange(1, 5))):
                quantity = Decimal(rng.choice((1, 1, 2, 3, 5, 10, 20)))
                discount = Decimal(rng.choice((0, 0, 0, 5, 10, 15)))
                lines.append({"product_id": product_ids[pi], "quantity": quantity,
                              "price": product_prices[pi], "discount": discount})  # fmt: skip
            amount = sum(
                (_line_total(x["quantity"], x["price"], x["discount"]) for x in lines), Decimal("0.00")
            )
        else:
            amount = _money(rng.randrange(30, 3000) * 1000)
        close = today + dt.timedelta(
            days=rng.randrange(-150, 0) if is_won or is_lost else rng.randrange(5, 120)
        )
        title_product = PRODUCTS[rng.randrange(len(PRODUCTS))][0].split(" (")[0].split(" —")[0]
        deal_rows.append(
            (owner, {
                "title": f"{title_product} — {company_rows[ci][1]['name']}"[:255],
                "company_id": company_ids[ci],
                "contact_id": _contact_of(ci),
                "stage_id": stage_id, "amount": amount, "currency": "rub",
                "expected_close": close,
                "source": rng.choice(("web_form", "call", "email", "referral", "exhibition", "manual")),
                **(dict(zip(("lost_because", "lost_reason"), rng.choice(LOST_REASONS), strict=True))
                   if is_lost else {}),
            })
        )  # fmt: skip
        deal_lines.append(lines)
        deal_meta.append((ci, is_won, amount))
    deal_ids = loader.insert("deals", deal_rows)
    loader.update("deals", [(deal_rows[i][0], deal_ids[i], {"stage_id": lost}) for i, lost in lost_later])
    deals_of: dict[int, list[int]] = {}
    for i, (ci, _won, _amount) in enumerate(deal_meta):
        deals_of.setdefault(ci, []).append(i)
    line_rows = [
        (deal_rows[i][0], {**line, "deal_id": deal_ids[i]})
        for i, lines in enumerate(deal_lines)
        for line in lines
    ]
    if line_rows:
        loader.insert("deal_lines", line_rows)

    # Activities of every kind: failed attempts to reach people, complaints with their resolution.
    activity_rows = []
    first_calls = first_calls[: counts["activities"]]  # out of the scale's number of activities
    for _ in range(counts["activities"] - len(first_calls)):
        ki = rng.randrange(len(contact_ids))
        ci = contact_company[ki]
        kind = rng.choices(("call", "email", "meeting", "note", "sms", "complaint"), (40, 25, 10, 10, 8, 7))[
            0
        ]
        outcome, duration, category, resolution = "done", None, None, None
        direction = rng.choices(("outbound", "inbound"), (70, 30))[0]
        if kind == "call":
            outcome = rng.choices(("done", "no_answer", "busy", "failed"), (62, 22, 11, 5))[0]
            duration = rng.randrange(1, 25) if outcome == "done" else 0
            subject = rng.choice(CALL_SUBJECTS)
            body = {"done": "Поговорили, договорились о следующем шаге.", "no_answer": "Не взяли трубку.",
                    "busy": "Занято, перезвонить позже.", "failed": "Номер недоступен."}[outcome]  # fmt: skip
        elif kind == "email":
            outcome = "failed" if rng.random() < 0.04 else "done"
            subject = rng.choice(EMAIL_SUBJECTS)
            body = (
                "Письмо вернулось: ящик не существует." if outcome == "failed" else "Отправлено, ждём ответа."
            )
        elif kind == "meeting":
            duration, direction = rng.choice((30, 45, 60, 90, 120)), "outbound"
            subject, body = rng.choice(MEETING_SUBJECTS), "Встретились, обсудили условия."
        elif kind == "note":
            direction, subject, body = (
                None,
                rng.choice(NOTE_SUBJECTS),
                "Клиент просит связываться после 11:00.",
            )
        elif kind == "sms":
            outcome = "failed" if rng.random() < 0.06 else "done"
            direction, subject, body = "outbound", rng.choice(SMS_SUBJECTS), "SMS отправлено."
        else:
            direction = "inbound"
            category = rng.choice(tuple(COMPLAINTS))
            subject = rng.choice(COMPLAINTS[category])
            resolution = rng.choices(("open", "in_progress", "resolved", "rejected"), (20, 20, 50, 10))[0]
            body = "Клиент недоволен, просит разобраться."
        deal_index = rng.choice(deals_of[ci]) if ci in deals_of and rng.random() < 0.4 else None
        activity_rows.append(
            (company_meta[ci][0], {
                "kind": kind, "direction": direction, "outcome": outcome,
                "occurred_at": _at(today - dt.timedelta(days=rng.randrange(0, 365)), rng),
                "duration_min": duration, "subject": subject, "body": body,
                "contact_id": contact_ids[ki],
                "deal_id": deal_ids[deal_index] if deal_index is not None else None,
                "complaint_category": category, "resolution": resolution,
            })
        )  # fmt: skip
    activity_ids = loader.insert("activities", activity_rows + first_calls)
    # Settled complaints took from hours to a few weeks (seeding decides when, before today).
    midnight = dt.datetime.combine(today, dt.time(0), tzinfo=dt.timezone(dt.timedelta(hours=3)))
    took = {}
    for (_owner, values), activity_id in zip(activity_rows, activity_ids, strict=False):
        if values["resolution"] in ("resolved", "rejected"):
            days = dt.timedelta(days=rng.choice((0.2, 0.5, 1, 2, 3, 5, 8, 13, 21)))
            at = min(values["occurred_at"] + days, midnight)
            took[activity_id] = {
                "resolved_at": at,
                "resolution_days": elapsed(values["occurred_at"], at, DAY),
            }
    records.store_calendar_values("activities", took, "the demo's complaints were settled over time")

    # Tasks: some done, some overdue; now and then assigned to a team mate.
    task_rows = []
    for _ in range(counts["tasks"]):
        ci = rng.randrange(n_companies)
        owner = company_meta[ci][0]
        mates = [m for m in TEAMS.get(team_of.get(owner, ""), ()) if m in user_ids and m != owner]
        assignee = rng.choice(mates) if mates and rng.random() < 0.15 else owner
        due = _at(today + dt.timedelta(days=rng.randrange(-30, 31)), rng)
        status = rng.choices(("open", "in_progress", "done", "cancelled"), (45, 20, 30, 5))[0]
        deal_index = rng.choice(deals_of[ci]) if ci in deals_of and rng.random() < 0.5 else None
        task_rows.append(
            (owner, {
                "title": rng.choice(TASK_TITLES), "due_at": due, "assignee_id": user_ids[assignee],
                "status": status, "priority": rng.choices(PRIORITIES, (15, 60, 20, 5))[0],
                "company_id": company_ids[ci],
                "contact_id": _contact_of(ci),
                "deal_id": deal_ids[deal_index] if deal_index is not None else None,
                "reminder_at": due - dt.timedelta(hours=1) if rng.random() < 0.3 else None,
            })
        )  # fmt: skip
    loader.insert("tasks", task_rows)

    # Invoices: for won deals first, then for other deals of a company; some paid, partly paid, overdue.
    won = [i for i, (_ci, is_won, _a) in enumerate(deal_meta) if is_won]
    others = [i for i, (_ci, is_won, _a) in enumerate(deal_meta) if not is_won]
    rng.shuffle(others)
    invoice_rows = []
    for n in range(counts["invoices"]):
        pool = won if n < len(won) else others
        di = pool[n] if n < len(won) else (pool[(n - len(won)) % len(pool)] if pool else None)
        if di is not None:
            ci, _is_won, amount = deal_meta[di]
        else:
            ci, amount = rng.randrange(n_companies), _money(rng.randrange(10, 500) * 1000)
        issued = today - dt.timedelta(days=rng.randrange(0, 180))
        due = issued + dt.timedelta(days=rng.choice((5, 10, 14, 30)))
        status = rng.choices(("draft", "issued", "cancelled"), (5, 92, 3))[0]
        paid_kind = rng.choices(("paid", "partly", "none"), (55, 15, 30))[0] if status == "issued" else "none"
        paid = {"paid": amount, "partly": (amount * Decimal(rng.choice((20, 30, 50, 70))) / 100).quantize(
            Decimal("0.01")), "none": None}[paid_kind]  # fmt: skip
        invoice_rows.append(
            (company_meta[ci][0], {
                "number": f"СЧ-{issued.year}-{n + 1:05d}", "company_id": company_ids[ci],
                "deal_id": deal_ids[di] if di is not None else None, "amount": amount, "currency": "rub",
                "issued_on": issued if status != "draft" else None, "due_on": due,
                "paid_amount": paid, "status": status,
            })
        )  # fmt: skip
    loader.insert("invoices", invoice_rows)

    # Each salesperson's plans from five months back to next month, set by the admin (plan vs fact).
    month = today.replace(day=1)
    months = [dt.date(month.year + (month.month - 1 + k) // 12, (month.month - 1 + k) % 12 + 1, 1)
              for k in range(-5, 2)]  # fmt: skip
    sellers = sorted({owner for owner, _values in deal_rows})
    plan_rows = [
        ("admin", {"manager_id": actors[seller].user_id, "month": first, "currency": "rub",
                   "amount": _money(rng.randrange(20, 60) * 100_000), "deals_count": rng.randrange(3, 11)})
        for seller in sellers
        for first in months
    ]  # fmt: skip
    loader.insert("sales_plans", plan_rows)

    from app.crm.derive import refresh_overdue

    refresh_overdue()
    return loader.result
