"""The personal-data filter: field names in the landings' languages, values, nested JSON."""

from __future__ import annotations

import json

import pytest

from bangi_landing.core.privacy import (
    MAX_DEPTH,
    is_personal_field,
    is_secret_field,
    looks_personal,
    withhold,
)

from .conftest import Landing
from .utils import form_click_ids

PERSONAL = {
    "English": "name first_name lastName fullname customerName phone phoneNumber tel tel1 mobile "
    "cell msisdn whatsapp email e-mail emailAddress address street city zip zipcode postcode "
    "postal_code dob date_of_birth birthdate birthday national_id passport passport_no ssn ip "
    "card cardnumber card_number ccnum cc_number cvv cvv2 cvc exp_month exp_year expiry "
    "cardholder iban pin comment message notes",
    "Spanish": "nombre nombre_completo apellido apellidos telefono teléfono celular movil móvil "
    "correo correo_electronico direccion dirección calle ciudad codigo_postal cp "
    "fecha_nacimiento fecha_de_nacimiento dni nie nif curp rfc rut cedula cédula pasaporte "
    "numero_tarjeta tarjeta mensaje comentario",
    "Portuguese": "nome sobrenome nome_completo telefone celular email endereco endereço rua "
    "bairro cidade cep cpf cnpj rg data_nascimento data_de_nascimento passaporte cartao "
    "numero_cartao mensagem",
    "French": "nom prenom prénom telephone téléphone portable courriel adresse rue ville "
    "code_postal date_naissance date_de_naissance passeport carte numero_carte",
    "German": "vorname nachname telefon telefonnummer handy mobil email adresse strasse straße "
    "plz postleitzahl stadt ort geburtsdatum geburtstag ausweis ausweisnummer reisepass "
    "kreditkarte karte nachricht",
    "Italian": "nome cognome telefono cellulare indirizzo via_indirizzo citta città cap "
    "data_di_nascita codice_fiscale passaporto carta commento",
    "Russian": "fio imya familiya otchestvo telefon mobilnyy pochta adres ulitsa gorod indeks "
    "data_rozhdeniya pasport karta inn snils",
    "Turkish": "ad adi ad\u0131 soyad soyad\u0131 isim telefon cep cep_telefonu eposta e_posta "
    "adres sokak "
    "posta_kodu dogum_tarihi doğum_tarihi tckn kimlik kimlik_no pasaport kart",
}

NOT_PERSONAL = (
    "utm_source utm_medium utm_campaign utm_content utm_term source campaign_name adset_name "
    "ad_name ad_id adset_id campaign_id site_source_name placement creative sub2 sub3 fbclid "
    "gclid ttclid offer offer_id quantity price currency product_name landingPath variant "
    "country lang"
)


@pytest.mark.parametrize("language", PERSONAL)
def test_personal_field_names_in_every_language_are_held_back(language: str) -> None:
    missed = [name for name in PERSONAL[language].split() if not is_personal_field(name)]
    assert missed == []


def test_marketing_and_order_parameters_pass() -> None:
    caught = [n for n in NOT_PERSONAL.split() if is_personal_field(n) or is_secret_field(n)]
    assert caught == []


@pytest.mark.parametrize(
    "name", ["password", "csrf_token", "csrfmiddlewaretoken", "X-XSRF-TOKEN", "api_secret"]
)
def test_secrets_are_held_back_without_a_word(name: str) -> None:
    assert is_secret_field(name)
    assert withhold({name: "s3cret", "offer": "1"}) == ({"offer": "1"}, [])


@pytest.mark.parametrize(
    "value",
    [
        "ana@example.com",
        "write to ana.lima+ring@mail.example.com.br please",
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "378282246310005",
        "+55 11 99999-0000",
        "+79161234567",
        "(11) 98765-4321",
        "987-654-3210",
    ],
)
def test_values_that_look_personal_are_held_back_whatever_the_name(value: str) -> None:
    assert looks_personal(value)
    assert withhold({"x": value, "offer": "1"}) == ({"offer": "1"}, ["x"])


@pytest.mark.parametrize(
    "value",
    [
        "120203456789012345",  # a Facebook ad id: digits, no card's length
        "23851234567890123",
        "4111111111111112",  # a card's shape, but not Luhn-valid
        "12345678901",  # a bare run of digits: an id
        "2026-11-30",
        "30.11.2026",
        "video-01",
        "LatAm Ring Campaign",
        "10-20",
    ],
)
def test_ids_dates_and_words_pass(value: str) -> None:
    assert not looks_personal(value)


def test_a_card_number_sent_as_a_json_number_is_held_back() -> None:
    assert withhold({"n": 4111111111111111, "qty": 2}) == ({"qty": 2}, ["n"])


def test_nested_json_is_filtered_at_every_level() -> None:
    order = {
        "customer": {"name": "Ana", "phone": "+55 11 99999 0000", "email": "a@b.co", "tier": "vip"},
        "items": [{"sku": "ring", "card": "4111111111111111", "cvv": "123"}, {"sku": "box"}],
        "offer_id": "456",
        "notes": "call after 6",
    }
    kept, withheld = withhold(order)
    assert kept == {
        "customer": {"tier": "vip"},
        "items": [{"sku": "ring"}, {"sku": "box"}],
        "offer_id": "456",
    }
    assert withheld == [
        "customer.name",
        "customer.phone",
        "customer.email",
        "items.card",
        "items.cvv",
        "notes",
    ]
    assert "Ana" not in json.dumps(kept)


def test_nesting_deeper_than_the_limit_is_dropped() -> None:
    deep: dict[str, object] = {"offer": "1"}
    for _ in range(900):  # far past the recursion a naive walk could take
        deep = {"level": deep}
    kept, _ = withhold(deep)
    depth = 0
    while isinstance(kept, dict) and "level" in kept:
        kept, depth = kept["level"], depth + 1  # type: ignore[assignment]
    assert depth == MAX_DEPTH - 1


def test_a_json_lead_through_the_middleware_keeps_nothing_personal(landing: Landing) -> None:
    [click_id, _] = form_click_ids(landing.get().text)
    landing.post(
        "/submit",
        json={
            "sub1": click_id,
            "customer": {"nombre": "Ana", "telefono": "11999990000", "correo": "a@b.co"},
            "items": [{"sku": "ring", "card": "4111111111111111"}],
            "utm_content": "video-01",
        },
    )
    [lead] = landing.events(type="lead")
    params = lead["params"]
    assert params["customer"] == {} and params["items"] == [{"sku": "ring"}]
    assert params["utm_content"] == "video-01"
    assert params["withheldFields"] == [
        "customer.nombre",
        "customer.telefono",
        "customer.correo",
        "items.card",
    ]


def test_personal_data_in_the_landing_url_stays_off_the_click(landing: Landing) -> None:
    landing.get(
        "/?source=fb&ad_name=video-01&email=ana%40example.com&telefone=11999990000&x=%2B55+11+99999+0000"
    )
    [click] = landing.events(type="click")
    params = click["params"]
    assert (params["source"], params["ad_name"]) == ("fb", "video-01")
    assert params["withheldFields"] == ["email", "telefone", "x"]
    assert "ana" not in json.dumps(params) and "99999" not in json.dumps(params)
