fn main() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    let mut tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap(); tok.with_padding(None); let _ = tok.with_truncation(None);
    let corpus = valor_fakes::corpus::sentences(1, 512);
    let lens: Vec<usize> = corpus.iter().map(|s| tok.encode(s.as_str(), true).unwrap().get_ids().len()).collect();
    let real: usize = lens.iter().sum();
    for by_tokens in [false, true] {
        let mut order: Vec<usize> = (0..512).collect();
        if by_tokens { order.sort_by_key(|&i| lens[i]); } else { order.sort_by_key(|&i| corpus[i].len()); }
        for batch in [8, 64] {
            let padded: usize = order.chunks(batch).map(|c| c.iter().map(|&i| lens[i]).max().unwrap() * c.len()).sum();
            println!("by_tokens={by_tokens} batch={batch} real={real} padded={padded} avg={:.1}", real as f64/512.0);
        }
    }
}
