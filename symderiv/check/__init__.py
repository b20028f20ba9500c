"""Numbers that check a derivation: exact evaluation of the closed forms, certification
against an independent scalar differentiation, the generated module against central
differences."""
