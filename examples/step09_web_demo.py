"""Tutorial step 09: a web demo of a pipeline with gradio.

The tutorial builds the page by hand (``gr.Interface.from_pipeline(pipe)`` or a text box and
a label). lightpipe fits a page to the task: a text box and label bars for text
classification, highlighted entities for NER, the answer marked in its context for question
answering, a similarity table for feature extraction, ... Same as ``lightpipe demo TASK --model M``.

    python examples/step09_web_demo.py                       # sentiment, the task's default model
    python examples/step09_web_demo.py --task ner --model dslim/bert-base-NER
    python examples/step09_web_demo.py --model ./sst2 --no-launch   # print one answer, no server
"""

import argparse
import json

from lightpipe import pipeline
from lightpipe.demo import build_demo, page_for

parser = argparse.ArgumentParser(description="Tutorial step 09: a web demo with gradio")
parser.add_argument("--task", default="sentiment-analysis")
parser.add_argument("--model", help="a Hub id or folder (default: the task's default model)")
parser.add_argument("--port", type=int, default=7860)
parser.add_argument("--no-launch", action="store_true", help="print the page's answer to its first "
                    "example and stop, instead of serving the page")
args = parser.parse_args()

pipe = pipeline(args.task, model=args.model)

# What the page shows for its first example: the same function the Submit button calls.
page = page_for(pipe)
example = page.examples[0] if page.examples else None
if example is not None:
    print("input:", json.dumps(example))
    print("page shows:", json.dumps(page.run(*example)))

if not args.no_launch:
    # A page on http://127.0.0.1:PORT; share=True would make a public link through gradio's relay.
    build_demo(pipe).launch(server_name="127.0.0.1", server_port=args.port)
