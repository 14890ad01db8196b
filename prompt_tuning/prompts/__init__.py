"""Soft prompts: the parameter, its initializers, and how it joins the embedded input."""

from prompt_tuning.prompts.combine import COMBINE_MODES, combine_with_inputs, combined_visibility
from prompt_tuning.prompts.initializers import (PromptShapeError, class_labels, from_array,
                                                from_string, random_uniform, sampled_vocab)
from prompt_tuning.prompts.prompt import Prompt
