"""Reading: the store's events into a monitor's window (store → page decoder → parse → held window →
window), incrementally between cycles, one read shared by the monitors over one index."""
