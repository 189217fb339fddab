"""Render: the plan turned into {relative path: text}. Pure: `ftc.write` is the only stage touching disk."""
