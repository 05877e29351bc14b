"""What an installer sets for one window unit; copy it with the firmware and edit it on the board.

The three layouts (README.md shows their wiring):
- the citizen's 2-key rating pad: LAYOUT = "2", CLERK = False
- the 5-key pad with reason keys: LAYOUT = "5", REASONS = ["slow", "attitude", "come-back", "unclear"]
- the clerk's keypad: LAYOUT = "keypad", CLERK = True (sign-in code, start, done, put-back, ...)
"""

MODEL = ""  # a key of boards.BOARDS; "" detects the board
LAYOUT = "2"  # "2": good/bad; "5": the five levels of the national scale; "keypad": the clerk's keypad
REASONS = []  # with "5": up to 4 reason keys, named as the station's [ratings] reasons
CLERK = True  # the clerk's keys are fitted: next, recall, skip, pause, start, done, put-back, resume
TICKET = ""  # "": none; "ticket" or "ticket:<category>" for a take-a-number button
GREEN = ""  # "": none; "green:<category>": the green-channel ticket (the elderly, the disabled)
TRANSFER = ""  # "": none; "transfer:<category>": send the citizen at the window to that category
CARD_READER = False  # an RDM6300-class 125 kHz card reader on boards.py's card_rx pin: clerks sign in by card
DISPLAY = False  # an SSD1306 128x64 display on I2C (boards.py's i2c pins) shows the clerk and ticket
