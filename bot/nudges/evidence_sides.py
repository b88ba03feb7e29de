"""Who said an evidence quote: scorers label the other side in several ways."""

BUYER_SIDE = frozenset({"customer", "buyer", "prospect", "external", "client"})
