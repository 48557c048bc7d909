"""Operations taught by hand: upsampling, dilation, RoI pooling, distance transforms."""
