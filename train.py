"""Fine-tune a model with a PEFT method: `python train.py model=minilm peft=lora dataset=sst2` (see --help).

The same command as `python -m peftlab.train` (peftlab/train.py), kept so a checkout runs it as a script.
"""

from peftlab.train import command

if __name__ == "__main__":
    command()
