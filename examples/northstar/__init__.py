"""Northstar orders: the second example, a shop's daily orders restated per day x store."""
