import java.io.*;
import java.util.*;
import org.apache.lucene.analysis.*;
import org.apache.lucene.analysis.core.*;
import org.apache.lucene.analysis.en.*;
import org.apache.lucene.analysis.standard.*;
import org.apache.lucene.analysis.tokenattributes.*;
import org.apache.lucene.analysis.util.*;

public class Check {
  static Analyzer stemOnly = new Analyzer() {
    protected TokenStreamComponents createComponents(String f, Reader r) {
      Tokenizer t = new KeywordTokenizer(r);
      return new TokenStreamComponents(t, new PorterStemFilter(t));
    }
  };
  static Analyzer anserini = new Analyzer() {
    protected TokenStreamComponents createComponents(String f, Reader r) {
      Tokenizer t = new StandardTokenizer(r);
      TokenStream s = new EnglishPossessiveFilter(org.apache.lucene.util.Version.LUCENE_4_10_4, t);
      s = new LowerCaseFilter(s);
      s = new StopFilter(s, StopAnalyzer.ENGLISH_STOP_WORDS_SET);
      s = new PorterStemFilter(s);
      return new TokenStreamComponents(t, s);
    }
  };
  static String run(Analyzer a, String text) throws IOException {
    StringBuilder sb = new StringBuilder();
    try (TokenStream ts = a.tokenStream("f", new StringReader(text))) {
      CharTermAttribute c = ts.addAttribute(CharTermAttribute.class);
      ts.reset();
      while (ts.incrementToken()) { if (sb.length() > 0) sb.append(' '); sb.append(c.toString()); }
      ts.end();
    }
    return sb.toString();
  }
  public static void main(String[] args) throws IOException {
    Analyzer a = args[0].equals("stem") ? stemOnly : anserini;
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
    PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, "UTF-8");
    System.err.println("stopwords: " + StopAnalyzer.ENGLISH_STOP_WORDS_SET.size() + " " + StopAnalyzer.ENGLISH_STOP_WORDS_SET);
    String line;
    while ((line = in.readLine()) != null) out.println(run(a, line));
    out.flush();
  }
}
