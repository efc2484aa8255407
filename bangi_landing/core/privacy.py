"""What stays on the landing: personal data, secrets and CSRF tokens never go to the tracker.

A lead's form fields and a click's URL parameters go through :func:`withhold`
before they become an event. A field is held back when

- **its name** looks personal or secret, in the languages landings are
  written in: each word of the name (``first_name``, ``customerPhone``,
  ``tel1``) is looked up, and the whole name with its separators removed is
  searched for longer stems (``phonenumber``, ``cardnumber``, ``ccnum``). The
  words cover name, surname, phone, mobile, email, address, street, postcode,
  birth date, identity documents (passport, national id, cpf, dni, ...),
  cards, passwords and tokens, and free text (comment, message), in English,
  Spanish, Portuguese, French, German, Italian, Russian (transliterated) and
  Turkish; or
- **its value** looks like an email address, a card number (Luhn-valid digits
  of a card brand's length) or a phone number written as one (``+`` in
  front, or grouped by spaces, dashes or brackets), whatever the field is
  called. A bare run of digits is not taken for a phone number (ad, offer
  and order ids look the same), nor is a date.

Nested JSON is filtered at every level, objects inside lists included.
Marketing parameters pass by name (``utm_*``, ``ad_name``, ``campaign_name``,
``adset_id``, ``sub2``: a name that starts with a marketing word), though
their values are still checked.

The names (never the values) of personal fields held back are reported, so
the tracker can say what it did not get; secrets and CSRF tokens are dropped
without a word.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_DEPTH", "is_personal_field", "is_secret_field", "looks_personal", "withhold"]

MAX_DEPTH = 8  # nesting deeper than this is dropped, not sent

# Words matched whole, one word of the name at a time: short ones, which as
# stems would be found inside innocent names ("ad" in "adset", "tel" in "hotel").
_PERSONAL_WORDS = frozenset(
    {
        # names
        "name", "names", "fio", "nom", "ad", "adi", "soyad", "soyadi", "imya", "imia",
        "familiya", "familia", "otchestvo", "cognome", "vorname", "nachname", "prenom",
        "nome", "sobrenome", "apellido", "apellidos", "nombre", "surname", "lastname",
        "firstname",
        # phones
        "tel", "tel1", "tel2", "phone", "mobile", "cell", "cep", "gsm", "msisdn", "handy",
        "movil", "telefon", "whatsapp", "viber", "portable", "isim",
        # email
        "mail", "email", "correo", "courriel", "eposta", "pochta",
        # where they live
        "address", "addr", "adres", "adresse", "adress", "street", "rua", "calle", "rue",
        "sokak", "ulitsa", "city", "ciudad", "cidade", "ville", "citta", "stadt", "ort", "gorod",
        "bairro", "barrio", "colonia", "zip", "zipcode", "postcode", "postal", "plz", "cp",
        "cap", "indeks", "house", "apartment", "apt",
        # who they are
        "dob", "birthday", "birthdate", "ssn", "cpf", "cnpj", "rg", "dni", "nie", "nif", "curp",
        "rfc", "rut", "cedula", "tckn", "kimlik", "inn", "snils", "passport", "ip",
        # money
        "card", "cc", "cvv", "cvc", "csc", "expiry", "iban", "pin", "tarjeta",
        "cartao", "carte", "karta", "kart", "carta", "karte",
        # free text, which holds any of the above
        "comment", "comments", "message", "note", "notes", "mensaje", "mensagem",
        "comentario", "commentaire", "kommentar", "nachricht", "commento",
    }
)  # fmt: skip

# Stems searched for in the whole name, separators removed: long enough to be
# found only where they mean what they say ("customername", "numerotelefono").
_PERSONAL_STEMS = (
    "name", "phone", "mail", "addr", "adres", "nombre", "apellido", "telefon", "celular",
    "cellul", "movil", "mobil", "msisdn", "whatsapp", "correo", "direcc", "endere",
    "indirizzo", "strasse", "street", "postakodu", "postleitzahl", "codicefiscale", "postcode",
    "postal", "zipcode", "birth",
    "nacimiento", "nascimento", "naissance", "nascita", "geburt", "dogum", "rozhd", "passport",
    "pasaport", "passaport", "passeport", "pasport", "reisepass", "ausweis", "kimlik", "cedula",
    "documento", "nationalid", "idnumber", "idcard", "identity", "cardnum", "cardno",
    "cardholder", "ccnum", "ccno", "creditcard", "kreditkarte", "tarjeta", "cartao",
    "securitycode", "expmonth", "expyear", "expdate", "expiration", "imya", "familiya", "otchestvo",
    "soyad", "cognome", "vorname", "nachname", "prenom", "sobrenome", "courriel", "eposta",
)  # fmt: skip

_SECRET_WORDS = frozenset({"password", "passwd", "pass", "pwd", "secret", "token", "csrf", "xsrf"})
_SECRET_STEMS = ("password", "passwd", "secret", "token", "csrf", "xsrf")

# A name that starts with one of these words is a marketing or order parameter
# ("campaign_name", "product_name"), whatever follows.
_MARKETING = frozenset(
    {
        "utm", "ad", "ads", "adset", "adgroup", "campaign", "creative", "placement", "site",
        "source", "offer", "sub", "aff", "affiliate", "pub", "publisher", "stream", "flow",
        "lander", "landing", "traffic", "keyword", "network", "pixel", "click", "product",
        "item", "page", "form", "event", "device", "browser", "os", "geo", "country", "lang",
        "currency", "price",
    }
)  # fmt: skip

# camelCase, snake_case, kebab-case, dotted, digits apart: "customerPhone2" -> customer, phone, 2
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_SEPARATORS = re.compile(r"[\W_]+")
# Letters that NFKD does not take apart: Turkish dotless i, German sharp s, and the like.
_UNACCENTED = str.maketrans(
    {"\u0131": "i", "\u0130": "I", "\u00df": "ss", "\u00f8": "o", "\u00d8": "O", "\u0142": "l"}
)

# Bounded runs, so a long value costs linear time (RFC 5321: a local part of 64 at most).
_EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_CARD = re.compile(r"\d(?:[ -]?\d){11,18}")
_PHONE = re.compile(r"\+?[\d(][\d\s().-]{5,22}\d")
_DATE = re.compile(r"\d{4}([-./])\d{1,2}\1\d{1,2}|\d{1,2}([-./])\d{1,2}\2\d{2,4}")
# Card brands: the lengths each issues, by number prefix (a 17-digit ad id is no card).
_CARD_BRANDS = (
    (re.compile(r"4"), (13, 16, 19)),  # Visa
    (re.compile(r"5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)"), (16,)),  # Mastercard
    (re.compile(r"3[47]"), (15,)),  # American Express
    (re.compile(r"6(?:011|4[4-9]|5)"), (16, 17, 18, 19)),  # Discover
    (re.compile(r"35(?:2[89]|[3-8]\d)"), (16, 17, 18, 19)),  # JCB
    (re.compile(r"62"), (16, 17, 18, 19)),  # UnionPay
    (re.compile(r"3(?:0[0-5]|[689])"), (14, 15, 16, 17, 18, 19)),  # Diners Club
    (re.compile(r"220[0-4]"), (16, 17, 18, 19)),  # Mir
    (re.compile(r"50|5[6-9]|6"), (12, 13, 14, 15, 16, 17, 18, 19)),  # Maestro, Elo, RuPay
)


def _plain(name: str) -> str:
    """``name`` in ASCII letters: "teléfono" is "telefono", "doğum" is "dogum"."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_UNACCENTED))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def _split(name: str) -> tuple[list[str], str]:
    """The name's words, and the whole name without separators, in lowercase ASCII."""
    plain = _plain(name)
    return [word.lower() for word in _WORDS.findall(plain)], _SEPARATORS.sub("", plain).lower()


def is_secret_field(name: str) -> bool:
    """True for passwords, tokens and CSRF fields."""
    words, joined = _split(name)
    return any(word in _SECRET_WORDS for word in words) or any(
        stem in joined for stem in _SECRET_STEMS
    )


def is_personal_field(name: str) -> bool:
    """True for a field whose name says it holds personal data (see the module's docstring)."""
    words, joined = _split(name)
    if len(words) > 1 and words[0] in _MARKETING:
        return False
    return any(word in _PERSONAL_WORDS for word in words) or any(
        stem in joined for stem in _PERSONAL_STEMS
    )


def looks_personal(value: str) -> bool:
    """True for text that holds an email address, or is a card or phone number."""
    text = value.strip()
    if "@" in text and _EMAIL.search(text):
        return True
    if _CARD.fullmatch(text) and _is_card_number(re.sub(r"\D", "", text)):
        return True
    if _PHONE.fullmatch(text) and not _DATE.fullmatch(text):
        digits = sum(c.isdigit() for c in text)
        # Written as a phone number: "+" in front, or grouped; a bare digit run is an id.
        return 7 <= digits <= 15 and (text[0] == "+" or not text.isdigit())
    return False


def _is_card_number(digits: str) -> bool:
    if not any(brand.match(digits) and len(digits) in lengths for brand, lengths in _CARD_BRANDS):
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):  # Luhn
        n = int(digit)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def withhold(fields: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``fields`` without personal data and secrets, and the personal fields' names.

    Nested names are dotted (``customer.phone``); a list's items share their
    list's name. Values nested deeper than :data:`MAX_DEPTH` are dropped.
    """
    withheld: dict[str, None] = {}  # an ordered set
    kept = _filter_object(fields, "", withheld, 1)
    return kept, list(withheld)


def _filter_object(
    fields: Mapping[str, Any], prefix: str, withheld: dict[str, None], depth: int
) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or is_secret_field(name):
            continue
        path = prefix + name
        if is_personal_field(name):
            withheld[path] = None
            continue
        clean = _filter_value(value, path, withheld, depth)
        if clean is not _DROPPED:
            kept[name] = clean
    return kept


_DROPPED = object()


def _filter_value(value: Any, path: str, withheld: dict[str, None], depth: int) -> Any:
    if isinstance(value, str):
        if looks_personal(value):
            withheld[path] = None
            return _DROPPED
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 10**11 and _is_card_number(str(value)):  # a card number sent as a number
            withheld[path] = None
            return _DROPPED
        return value
    if isinstance(value, Mapping | list) and depth >= MAX_DEPTH:
        return _DROPPED  # deeper than any honest form: not worth sending
    if isinstance(value, Mapping):
        return _filter_object(value, path + ".", withheld, depth + 1)
    if isinstance(value, list):
        items = (_filter_value(item, path, withheld, depth + 1) for item in value)
        return [item for item in items if item is not _DROPPED]
    return value  # floats, booleans, None
