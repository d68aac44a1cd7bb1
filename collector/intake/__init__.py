"""Receiving: UDP listeners that hand batches of datagrams on (`listener`), read with
recvmmsg(2) where the platform has it (`mmsg`). No parsing here."""

from collector.intake.listener import Intake

__all__ = ["Intake"]
