"""imflow: who on the network uses instant messaging, P2P and VoIP, from NetFlow v5/v9 and IPFIX."""

__version__ = "0.1.0"
