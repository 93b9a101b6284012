import java.io.*;
import java.util.*;
import org.apache.lucene.analysis.*;
import org.apache.lucene.analysis.core.*;
import org.apache.lucene.analysis.en.*;
import org.apache.lucene.analysis.standard.*;
import org.apache.lucene.analysis.tokenattributes.*;
import org.apache.lucene.document.*;
import org.apache.lucene.index.*;
import org.apache.lucene.search.*;
import org.apache.lucene.search.similarities.*;
import org.apache.lucene.store.*;
import org.apache.lucene.util.*;

public class Bm25Check {
  // Lucene 9 BM25Similarity + SmallFloat.intToByte4, on Lucene 4.10's Similarity API.
  static class L9BM25 extends Similarity {
    final float k1 = 0.9f, b = 0.4f;
    static int longToInt4(long i) {
      int numBits = 64 - Long.numberOfLeadingZeros(i);
      if (numBits < 4) return (int) i;
      int shift = numBits - 4;
      int encoded = (int) (i >>> shift);
      encoded &= 0x07;
      encoded |= (shift + 1) << 3;
      return encoded;
    }
    static long int4ToLong(int i) {
      long bits = i & 0x07; int shift = (i >>> 3) - 1;
      return shift == -1 ? bits : (bits | 0x08) << shift;
    }
    static final int NUM_FREE_VALUES = 255 - longToInt4(Integer.MAX_VALUE);
    static byte intToByte4(int i) {
      if (i < NUM_FREE_VALUES) return (byte) i;
      return (byte) (NUM_FREE_VALUES + longToInt4(i - NUM_FREE_VALUES));
    }
    static int byte4ToInt(byte b) {
      int i = Byte.toUnsignedInt(b);
      if (i < NUM_FREE_VALUES) return i;
      return (int) (NUM_FREE_VALUES + int4ToLong(i - NUM_FREE_VALUES));
    }
    static final float[] LENGTH_TABLE = new float[256];
    static { for (int i = 0; i < 256; i++) LENGTH_TABLE[i] = byte4ToInt((byte) i); }
    public long computeNorm(FieldInvertState state) {
      return intToByte4(state.getLength() - state.getNumOverlap());
    }
    static class W extends SimWeight {
      float boost, idf, weight; float[] cache;
      public float getValueForNormalization() { return 1f; }
      public void normalize(float queryNorm, float topLevelBoost) { weight = boost * topLevelBoost * idf; }
    }
    public SimWeight computeWeight(float queryBoost, CollectionStatistics cs, TermStatistics... ts) {
      W w = new W();
      long df = ts[0].docFreq(), n = cs.docCount();
      w.idf = (float) Math.log(1 + (n - df + 0.5D) / (df + 0.5D));
      float avgdl = (float) (cs.sumTotalTermFreq() / (double) cs.docCount());
      w.cache = new float[256];
      for (int i = 0; i < 256; i++) w.cache[i] = 1f / (k1 * ((1 - b) + b * LENGTH_TABLE[i] / avgdl));
      w.boost = queryBoost; w.weight = queryBoost * w.idf;
      return w;
    }
    public SimScorer simScorer(SimWeight sw, AtomicReaderContext ctx) throws IOException {
      final W w = (W) sw;
      final NumericDocValues norms = ctx.reader().getNormValues("f");
      return new SimScorer() {
        public float score(int doc, float freq) {
          float ni = w.cache[((byte) norms.get(doc)) & 0xFF];
          return w.weight - w.weight / (1f + freq * ni);
        }
        public float computeSlopFactor(int d) { return 1f; }
        public float computePayloadFactor(int doc, int s, int e, BytesRef p) { return 1f; }
      };
    }
    public float coord(int overlap, int maxOverlap) { return 1f; }
    public float queryNorm(float v) { return 1f; }
  }
  static Analyzer anserini = new Analyzer() {
    protected TokenStreamComponents createComponents(String f, Reader r) {
      Tokenizer t = new StandardTokenizer(r);
      TokenStream s = new EnglishPossessiveFilter(Version.LUCENE_4_10_4, t);
      s = new LowerCaseFilter(s);
      s = new StopFilter(s, StopAnalyzer.ENGLISH_STOP_WORDS_SET);
      s = new PorterStemFilter(s);
      return new TokenStreamComponents(t, s);
    }
  };
  static List<String> analyze(String text) throws IOException {
    List<String> out = new ArrayList<>();
    try (TokenStream ts = anserini.tokenStream("f", new StringReader(text))) {
      CharTermAttribute c = ts.addAttribute(CharTermAttribute.class);
      ts.reset(); while (ts.incrementToken()) out.add(c.toString()); ts.end();
    }
    return out;
  }
  public static void main(String[] args) throws Exception {
    List<String> docs = java.nio.file.Files.readAllLines(new File(args[0]).toPath());
    List<String> queries = java.nio.file.Files.readAllLines(new File(args[1]).toPath());
    Similarity sim = new L9BM25();
    Directory dir = new RAMDirectory();
    IndexWriterConfig cfg = new IndexWriterConfig(Version.LUCENE_4_10_4, anserini);
    cfg.setSimilarity(sim);
    try (IndexWriter w = new IndexWriter(dir, cfg)) {
      for (int i = 0; i < docs.size(); i++) {
        Document d = new Document();
        d.add(new StringField("id", String.format("doc%05d", i), Field.Store.YES));
        d.add(new TextField("f", docs.get(i), Field.Store.NO));
        w.addDocument(d);
      }
    }
    IndexReader r = DirectoryReader.open(dir);
    IndexSearcher s = new IndexSearcher(r);
    s.setSimilarity(sim);
    BooleanQuery.setMaxClauseCount(100000);
    PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, "UTF-8");
    for (int qi = 0; qi < queries.size(); qi++) {
      Map<String, Integer> counts = new TreeMap<>();
      for (String t : analyze(queries.get(qi))) counts.merge(t, 1, Integer::sum);
      if (counts.isEmpty()) continue;
      BooleanQuery q = new BooleanQuery();
      for (Map.Entry<String, Integer> e : counts.entrySet()) {
        TermQuery tq = new TermQuery(new Term("f", e.getKey()));
        tq.setBoost((float) e.getValue());
        q.add(tq, BooleanClause.Occur.SHOULD);
      }
      TopDocs td = s.search(q, Integer.parseInt(System.getProperty("k", "100")));
      for (ScoreDoc sd : td.scoreDocs)
        out.printf("q%d %s %08x %.9g%n", qi, r.document(sd.doc).get("id"), Float.floatToIntBits(sd.score), sd.score);
    }
    out.flush();
  }
}
