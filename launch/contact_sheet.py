"""Contact sheet of the 25 KADID distortions x 5 levels: see metaiqa_jax.data.contact_sheet."""
import sys
from metaiqa_jax.data.contact_sheet import main
main(sys.argv[1:])
