"""What an installer sets for one window unit; copy it with the firmware and edit it on the board."""

MODEL = ""  # a key of boards.BOARDS; "" detects the board
LAYOUT = "2"  # "2": good/bad buttons; "5": the five levels of the national scale
CLERK = True  # the clerk's next/recall/skip/pause keys are fitted
TICKET = ""  # "": none; "ticket" or "ticket:<category>" for a take-a-number button
