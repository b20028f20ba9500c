"""Hand derivations: reading claims from a claims file or a write-up, and judging them claim by claim."""
