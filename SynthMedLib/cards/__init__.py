"""Model cards: a JSON schema, a validating loader and the registry of known models.

    from SynthMedLib.cards import load_card, list_cards
    card = load_card("demo-brain")          # or a path to a card.json / a folder holding one
    card.space["shape"], card.networks["diffusion"].args, card.conditioning.variables, card.scheduler.default_steps
"""

from SynthMedLib.cards.card import Card, validate
from SynthMedLib.cards.registry import SHIPPED_DIR, list_cards, load_card, read_card

__all__ = ["Card", "validate", "load_card", "list_cards", "read_card", "SHIPPED_DIR"]
