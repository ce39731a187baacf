"""What every provider simulator shares: a clock tests can advance, injectable faults, a webhook
outbox that signs nothing itself but delivers (with retries, twice, late or out of order), the
simulator's own record of charges, and the `/_sim/...` control routes.

A provider simulator (`paycell/psp/<provider>/simulator.py`) builds its app with `SimKit.mount`
and speaks only its provider's wire format on the other routes.
"""
from paycell.psp.simkit.clock import SimClock
from paycell.psp.simkit.faults import Faults
from paycell.psp.simkit.kit import SIM_KIT, SimCharge, SimKit, SimRefund
from paycell.psp.simkit.outbox import Outbox

__all__ = ["SIM_KIT", "Faults", "Outbox", "SimCharge", "SimClock", "SimKit", "SimRefund"]
