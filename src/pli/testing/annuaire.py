"""Synthetic "Annuaire Santé" extracts in the real format, for tests and benchmarks.

Same header, 53 fields with the trailing ``|``, one line per activity, sorted by national
id like the published file; names, professions and towns drawn with skewed frequencies so
that some are very common (as MARTIN or PARIS are) and most are rare.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

HEADER = (
    "Type d'identifiant PP|Identifiant PP|Identification nationale PP|Code civilité d'exercice|"
    "Libellé civilité d'exercice|Code civilité|Libellé civilité|Nom d'exercice|Prénom d'exercice|"
    "Code profession|Libellé profession|Code catégorie professionnelle|Libellé catégorie professionnelle|"
    "Code type savoir-faire|Libellé type savoir-faire|Code savoir-faire|Libellé savoir-faire|"
    "Code mode exercice|Libellé mode exercice|Numéro SIRET site|Numéro SIREN site|Numéro FINESS site|"
    "Numéro FINESS établissement juridique|Identifiant technique de la structure|Raison sociale site|"
    "Enseigne commerciale site|Complément destinataire (coord. structure)|"
    "Complément point géographique (coord. structure)|Numéro Voie (coord. structure)|"
    "Indice répétition voie (coord. structure)|Code type de voie (coord. structure)|"
    "Libellé type de voie (coord. structure)|Libellé Voie (coord. structure)|"
    "Mention distribution (coord. structure)|Bureau cedex (coord. structure)|"
    "Code postal (coord. structure)|Code commune (coord. structure)|Libellé commune (coord. structure)|"
    "Code pays (coord. structure)|Libellé pays (coord. structure)|Téléphone (coord. structure)|"
    "Téléphone 2 (coord. structure)|Télécopie (coord. structure)|Adresse e-mail (coord. structure)|"
    "Code Département (structure)|Libellé Département (structure)|Ancien identifiant de la structure|"
    "Autorité d'enregistrement|Code secteur d'activité|Libellé secteur d'activité|"
    "Code section tableau pharmaciens|Libellé section tableau pharmaciens|"
)
WIDTH = HEADER.count("|") + 1  # 53, the last one empty

SURNAMES = [
    "MARTIN",
    "BERNARD",
    "THOMAS",
    "PETIT",
    "ROBERT",
    "RICHARD",
    "DURAND",
    "DUBOIS",
    "MOREAU",
    "LAURENT",
    "SIMON",
    "MICHEL",
    "LEFEBVRE",
    "LEROY",
    "ROUX",
    "DAVID",
    "BERTRAND",
    "MOREL",
    "FOURNIER",
    "GIRARD",
    "BONNET",
    "DUPONT",
    "LAMBERT",
    "FONTAINE",
    "ROUSSEAU",
    "VINCENT",
    "MULLER",
    "LEFEVRE",
    "FAURE",
    "ANDRE",
    "MERCIER",
    "BLANC",
    "GUERIN",
    "BOYER",
    "GARNIER",
    "CHEVALIER",
    "FRANCOIS",
    "LEGRAND",
    "GAUTHIER",
    "GARCIA",
    "PERRIN",
    "ROBIN",
    "CLEMENT",
    "MORIN",
    "NICOLAS",
    "HENRY",
    "ROUSSEL",
    "MATHIEU",
    "GAUTIER",
    "MASSON",
    "MARCHAND",
    "DUVAL",
    "DENIS",
    "DUMONT",
    "MARIE",
    "LEMAIRE",
    "NOEL",
    "MEYER",
    "DUFOUR",
    "MEUNIER",
    "BRUN",
    "BLANCHARD",
    "GIRAUD",
    "JOLY",
    "RIVIERE",
    "LUCAS",
    "BRUNET",
    "GAILLARD",
    "BARBIER",
    "ARNAUD",
    "MARTINEZ",
    "GERARD",
    "ROCHE",
    "RENARD",
    "SCHMITT",
    "ROY",
    "LEROUX",
    "COLIN",
    "VIDAL",
    "CARON",
    "PICARD",
    "ROGER",
    "FABRE",
    "AUBERT",
    "LEMOINE",
    "RENAUD",
    "DUMAS",
    "LACROIX",
    "OLIVIER",
    "PHILIPPE",
    "BOURGEOIS",
    "PIERRE",
    "BENOIT",
    "REY",
    "LECLERC",
    "PAYET",
    "ROLLAND",
    "LECLERCQ",
    "GUILLAUME",
    "LECOMTE",
    "LOPEZ",
    "JEAN",
    "DUPUY",
    "GUILLOT",
    "HUBERT",
    "BERGER",
    "CARPENTIER",
    "SANCHEZ",
    "DE_RUIJTER",
    "LE_GALL",
    "N'DIAYE",
    "HÉBERT",
    "LEFÈVRE",
    "CÔTÉ",
]
# Two-word names kept whole.
SURNAMES = [name.replace("_", " ") for name in SURNAMES]
SYLLABLES = [
    "BA",
    "BE",
    "BO",
    "BOU",
    "CHA",
    "CHE",
    "DA",
    "DE",
    "DI",
    "DU",
    "FA",
    "FE",
    "GA",
    "GO",
    "LA",
    "LE",
    "LI",
    "LO",
    "LOU",
    "MA",
    "ME",
    "MI",
    "MO",
    "NA",
    "NE",
    "NI",
    "NO",
    "PA",
    "PE",
    "PI",
    "RA",
    "RE",
    "RI",
    "RO",
    "SA",
    "SE",
    "SI",
    "TA",
    "TE",
    "TI",
    "VA",
    "VE",
    "VI",
    "ZA",
]
FIRST_NAMES = [
    "MARIE",
    "JEAN",
    "PIERRE",
    "MICHEL",
    "ANDRE",
    "PHILIPPE",
    "NATHALIE",
    "ISABELLE",
    "SYLVIE",
    "CATHERINE",
    "FRANCOISE",
    "ALAIN",
    "NICOLAS",
    "CHRISTOPHE",
    "STEPHANE",
    "LAURENT",
    "SOPHIE",
    "VALERIE",
    "SANDRINE",
    "CELINE",
    "JULIE",
    "AURELIE",
    "CAMILLE",
    "THOMAS",
    "JULIEN",
    "MAXIME",
    "ANTOINE",
    "LUCAS",
    "EMMA",
    "LEA",
    "CHLOE",
    "MANON",
    "SARAH",
    "LAURA",
    "PAULINE",
    "CLAIRE",
    "ANNE",
    "HELENE",
    "ERIC",
    "OLIVIER",
    "FREDERIC",
    "DAVID",
    "VINCENT",
    "THIERRY",
    "PASCAL",
    "BRUNO",
    "PATRICK",
    "DIDIER",
    "GILLES",
    "XAVIER",
    "YANNICK",
    "JEAN-PIERRE",
    "JEAN-LUC",
    "MARIE-CLAIRE",
    "ANNE-SOPHIE",
    "HÉLÈNE",
    "FRANÇOIS",
    "JÉRÔME",
    "CÉCILE",
    "ÉLODIE",
    "GAËLLE",
    "NOËL",
]
# (code, label, id type "8" RPPS or "0" ADELI, weight, specialties)
MEDICAL_SPECIALTIES = [
    "Médecine générale",
    "Cardiologie et maladies vasculaires",
    "Pédiatrie",
    "Psychiatrie",
    "Gynécologie-obstétrique",
    "Dermatologie et vénéréologie",
    "Ophtalmologie",
    "Radio-diagnostic",
    "Anesthésie-réanimation",
    "Oto-rhino-laryngologie",
    "Gastro-entérologie et hépatologie",
    "Pneumologie",
    "Rhumatologie",
    "Neurologie",
    "Endocrinologie et métabolisme",
    "Chirurgie orthopédique et traumatologie",
    "Néphrologie",
    "Oncologie option médicale",
    "Santé publique et médecine sociale",
    "Médecine du travail",
    "Gériatrie",
    "Médecine d'urgence",
]
PROFESSIONS = [
    ("60", "Infirmier", 34, []),
    ("10", "Médecin", 24, MEDICAL_SPECIALTIES),
    ("70", "Masseur-Kinésithérapeute", 10, []),
    ("21", "Pharmacien", 9, ["Pharmacie", "Biologie médicale"]),
    (
        "40",
        "Chirurgien-Dentiste",
        5,
        ["Orthopédie dento-faciale", "Chirurgie orale", "Qualifié en médecine bucco-dentaire"],
    ),
    ("50", "Sage-Femme", 3, []),
    ("91", "Orthophoniste", 3, []),
    ("80", "Pédicure-Podologue", 2, []),
    ("26", "Audioprothésiste", 1, []),
    ("28", "Opticien-Lunetier", 2, []),
    ("94", "Psychomotricien", 1, []),
    ("96", "Ergothérapeute", 1, []),
    ("95", "Orthoptiste", 1, []),
    ("98", "Diététicien", 1, []),
]
CITIES = [
    ("75015", "75115", "PARIS"),
    ("13008", "13208", "MARSEILLE"),
    ("69003", "69383", "LYON"),
    ("31000", "31555", "TOULOUSE"),
    ("06000", "06088", "NICE"),
    ("44000", "44109", "NANTES"),
    ("67000", "67482", "STRASBOURG"),
    ("34000", "34172", "MONTPELLIER"),
    ("33000", "33063", "BORDEAUX"),
    ("59000", "59350", "LILLE"),
    ("35000", "35238", "RENNES"),
    ("51100", "51454", "REIMS"),
    ("42000", "42218", "SAINT-ETIENNE"),
    ("83000", "83137", "TOULON"),
    ("38000", "38185", "GRENOBLE"),
    ("21000", "21231", "DIJON"),
    ("49000", "49007", "ANGERS"),
    ("30000", "30189", "NIMES"),
    ("63000", "63113", "CLERMONT-FERRAND"),
    ("72000", "72181", "LE MANS"),
    ("29200", "29019", "BREST"),
    ("37000", "37261", "TOURS"),
    ("80000", "80021", "AMIENS"),
    ("87000", "87085", "LIMOGES"),
    ("25000", "25056", "BESANCON"),
    ("45000", "45234", "ORLEANS"),
    ("57000", "57463", "METZ"),
    ("76000", "76540", "ROUEN"),
    ("14000", "14118", "CAEN"),
    ("54000", "54395", "NANCY"),
    ("64000", "64445", "PAU"),
    ("17000", "17300", "LA ROCHELLE"),
    ("86000", "86194", "POITIERS"),
    ("66000", "66136", "PERPIGNAN"),
    ("20000", "2A004", "AJACCIO"),
    ("97400", "97411", "SAINT-DENIS"),
    ("25300", "25462", "PONTARLIER"),
    ("05000", "05061", "GAP"),
    ("48000", "48095", "MENDE"),
    ("09000", "09122", "FOIX"),
    ("24000", "24322", "PÉRIGUEUX"),
    ("01000", "01053", "BOURG-EN-BRESSE"),
    ("74000", "74010", "ANNECY"),
    ("73000", "73065", "CHAMBÉRY"),
    ("26000", "26362", "VALENCE"),
    ("84000", "84007", "AVIGNON"),
    ("19100", "19031", "BRIVE-LA-GAILLARDE"),
    ("62000", "62041", "ARRAS"),
    ("68100", "68224", "MULHOUSE"),
    ("90000", "90010", "BELFORT"),
]
STRUCTURES = [
    "CABINET {name}",
    "CENTRE HOSPITALIER DE {city}",
    "PHARMACIE DU CENTRE",
    "CLINIQUE SAINT-JOSEPH",
    "MAISON DE SANTE {city}",
    "",
    "",
]


_CUMULATIVE: dict[tuple[int, float], list[float]] = {}


def _skewed(rng: random.Random, items: list[str] | list[tuple[str, str, str]], power: float = 1.1) -> int:
    # Zipf-like: item k is chosen with weight 1/(k+1)^power.
    key = (len(items), power)
    if key not in _CUMULATIVE:
        total, cumulative = 0.0, []
        for rank in range(len(items)):
            total += 1 / (rank + 1) ** power
            cumulative.append(total)
        _CUMULATIVE[key] = cumulative
    return rng.choices(range(len(items)), cum_weights=_CUMULATIVE[key])[0]


def _surname(rng: random.Random) -> str:
    if rng.random() < 0.45:
        return SURNAMES[_skewed(rng, SURNAMES)]
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def _line(fields: dict[int, str]) -> str:
    row = [""] * WIDTH
    for index, value in fields.items():
        row[index] = value
    return "|".join(row)


def _person_lines(rng: random.Random, id_type: str, identifier: str) -> Iterator[str]:
    profession_index = rng.choices(range(len(PROFESSIONS)), weights=[p[2] for p in PROFESSIONS])[0]
    code, label, _, specialties = PROFESSIONS[profession_index]
    female = rng.random() < 0.6
    last, first = _surname(rng), FIRST_NAMES[_skewed(rng, FIRST_NAMES, 0.7)]
    doctor = code in ("10", "40") and rng.random() < 0.9
    specialty = specialties[_skewed(rng, specialties, 0.6)] if specialties and rng.random() < 0.85 else ""
    places = rng.choices([1, 2, 3, 4], weights=[70, 20, 7, 3])[0]
    for _ in range(places):
        postcode, commune, city = CITIES[_skewed(rng, CITIES, 0.9)]
        structure = rng.choice(STRUCTURES).format(name=last, city=city)
        siret = "".join(rng.choice("0123456789") for _ in range(14)) if structure else ""
        with_commune = rng.random() < 0.5
        yield _line(
            {
                0: id_type,
                1: identifier,
                2: id_type + identifier,
                3: "DR" if doctor else "",
                4: "Docteur" if doctor else "",
                5: "MME" if female else "M",
                6: "Madame" if female else "Monsieur",
                7: last,
                8: first,
                9: code,
                10: label,
                11: "C",
                12: "Civil",
                13: "S" if specialty else "",
                14: "Spécialité ordinale" if specialty else "",
                15: "SM01" if specialty else "",
                16: specialty,
                17: rng.choice("LS"),
                18: "Libéral",
                19: siret,
                23: "C" + siret if siret else "",
                24: structure,
                28: str(rng.randint(1, 200)),
                31: "Rue",
                32: "DE LA REPUBLIQUE",
                34: f"{postcode} {city}" + (" CEDEX" if rng.random() < 0.05 else ""),
                35: postcode,
                36: commune if with_commune else "",
                37: city if with_commune else "",
                47: "ARS/ARS/ARS",
            }
        )


def lines(count: int, *, seed: int = 1) -> Iterator[str]:
    """About ``count`` data lines (whole people only), sorted by national id."""
    rng = random.Random(seed)  # noqa: S311 — synthetic data, reproducible on purpose
    produced = 0
    adeli = 10_000_000  # ADELI "0" ids come first in national id order, then RPPS "8" ones
    rpps = 10_000_000_000
    while produced < count:
        if produced < count * 0.3:
            adeli += rng.randint(1, 40)
            id_type, identifier = "0", f"{adeli:09d}"
        else:
            rpps += rng.randint(1, 40)
            id_type, identifier = "8", f"{rpps:011d}"
        for line in _person_lines(rng, id_type, identifier):
            produced += 1
            yield line


def write(path: Path, count: int, *, seed: int = 1) -> Path:
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(HEADER + "\n")
        for line in lines(count, seed=seed):
            out.write(line + "\n")
    return path
