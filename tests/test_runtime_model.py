"""The runtime's model wrapper: decoding ends at its vocabulary's EOS, whatever that id is."""

import numpy as np
import seqio

from prompt_tuning.runtime.model import EncoderDecoderModel


def test_decoding_ends_at_the_eos_of_the_models_vocabulary():
  seen = {}

  def decode(module, params, tokens, max_decode_length, rng=None, *, eos_id, **features):
    del module, params, max_decode_length, rng, features
    seen['eos_id'] = eos_id
    return tokens, np.zeros(tokens.shape[0])

  for eos_id in (1, 7):
    model = EncoderDecoderModel(module=None, vocabulary=seqio.PassThroughVocabulary(16, eos_id),
                                decoding_method=decode)
    model.predict_batch(None, {'encoder_input_tokens': np.ones((2, 3), np.int32)}, 4)
    assert seen['eos_id'] == eos_id
