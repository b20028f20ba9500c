"""The reverse sweep over one generic time step, and the rewrites that give the closed forms."""
