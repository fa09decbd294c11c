"""Country names as CLDR writes them in English (what GA4, Amplitude and Segment send) that
pycountry's ISO names do not match: CLDR's territory names and its short and variant
forms (`alt="short"`, `alt="variant"` in CLDR's en.xml), to ISO 3166-1 alpha-2 codes.

CLDR territories that are no ISO 3166-1 country (Canary Islands, Ceuta & Melilla, Diego
Garcia, ...) are left out: their codes would name no country. Kosovo keeps `XK`, the
user-assigned code CLDR, the EU and the vendors use for it.
"""

from __future__ import annotations

CLDR_NAMES: dict[str, str] = {
    # CLDR territory names (en) that pycountry does not match.
    "Antigua & Barbuda": "AG", "Bosnia & Herzegovina": "BA", "St. Barthélemy": "BL",
    "Brunei": "BN", "Caribbean Netherlands": "BQ", "Congo - Kinshasa": "CD",
    "Congo - Brazzaville": "CG", "Côte d'Ivoire": "CI", "Cape Verde": "CV",
    "Falkland Islands": "FK", "Micronesia": "FM",
    "South Georgia & South Sandwich Islands": "GS", "Hong Kong SAR China": "HK",
    "Heard Island & McDonald Islands": "HM", "St. Kitts & Nevis": "KN", "St. Lucia": "LC",
    "St. Martin": "MF", "Myanmar (Burma)": "MM", "Macao SAR China": "MO",
    "St. Pierre & Miquelon": "PM", "Pitcairn Islands": "PN", "Palestinian Territories": "PS",
    "Russia": "RU", "St. Helena": "SH", "St. Helena, Ascension & Tristan da Cunha": "SH",
    "Svalbard & Jan Mayen": "SJ", "São Tomé & Príncipe": "ST", "Sint Maarten": "SX",
    "Turks & Caicos Islands": "TC", "French Southern Territories": "TF",
    "French Southern and Antarctic Lands": "TF", "Trinidad & Tobago": "TT",
    "U.S. Outlying Islands": "UM", "Vatican City": "VA", "St. Vincent & Grenadines": "VC",
    "U.S. Virgin Islands": "VI", "Wallis & Futuna": "WF", "Kosovo": "XK",
    # CLDR's short and variant forms.
    "UK": "GB", "US": "US", "Turkey": "TR", "Palestine": "PS", "Hong Kong": "HK",
    "Macao": "MO", "Myanmar": "MM", "Ivory Coast": "CI", "Cabo Verde": "CV",
    "Czech Republic": "CZ", "Congo (DRC)": "CD", "Congo (Republic)": "CG",
    "Swaziland": "SZ", "East Timor": "TL", "Falkland Islands (Islas Malvinas)": "FK",
    "Chagos Archipelago": "IO", "North Macedonia": "MK", "Macedonia": "MK",
}

_BY_KEY = {name.casefold(): code for name, code in CLDR_NAMES.items()}


def cldr_country(name: str) -> str | None:
    """The alpha-2 code of a CLDR English name (any case; ’ or ' alike), or None."""
    return _BY_KEY.get(name.replace("\u2019", "'").strip().casefold())
